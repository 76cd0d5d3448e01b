"""Fast kernels for the CNN-BiGRU, each beside the plain code it replaces.

Why they exist: each op here computes what a plain JAX or Flax formulation
computes (the same values and the same gradients), but the plain one was
measured to be slow on CPU (docs/performance.md, "What each optimisation
bought"). Together, the max-pool, masked ReLU and BiGRU below took the
paper model's log-Mel training step (batch 32, 400 frames) from 25.8 to
37.6 utterances/s (x1.46) and its XLA buffers from 1088 to 432 MiB.

Each op names its reference, and a test in tests/ops_test.py checks it
against that reference:

* `max_pool`: `flax.linen.max_pool` (VALID, stride = size);
  `test_max_pool_matches_flax_max_pool_with_ties`.
* `masked_relu`: plain autodiff of `jnp.where(mask, relu(x), 0)`;
  `test_masked_relu_gradient_is_autodiffs`.
* `bigru` over `GRUParams`: flax's `nn.RNN(nn.GRUCell)` in both directions
  with `seq_lengths`; `test_bigru_equals_flax_rnn`.
* `apply_filterbank` (the log-Mel features' Mel product, skipping the
  filterbank's zero blocks: 78 -> 71 ms a batch): the dense product
  `power @ filterbank`;
  `features_test.py::test_banded_filterbank_product_equals_the_dense_product`.

A faster formulation replacing any of them must pass the same test.
"""

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    'GRUParams',
    'TF1GRUParams',
    'apply_filterbank',
    'GRUWeights',
    'bigru',
    'gru_weights',
    'mask_time',
    'masked_relu',
    'max_pool',
]


# ----------------------------------------------------------------------------
# Length masks and the masked ReLU.
# ----------------------------------------------------------------------------


def mask_time(x: jax.Array, lengths: jax.Array) -> jax.Array:
  """Zeros `x[b, t, ...]` for every `t >= lengths[b]`.

  Args:
    x: `[batch, time, ...]`.
    lengths: `[batch]` int, the valid steps of each row.

  Returns:
    `x` with the steps at or beyond each row's length set to zero.
  """
  valid = jnp.arange(x.shape[1])[None, :] < lengths[:, None]  # [batch, time]
  valid = valid.reshape(valid.shape + (1,) * (x.ndim - 2))
  return jnp.where(valid, x, jnp.zeros((), x.dtype))


@jax.custom_vjp
def masked_relu(x: jax.Array, lengths: jax.Array) -> jax.Array:
  """`relu(mask_time(x, lengths))`: the authors mask before the ReLU.

  Reference: plain autodiff of `jnp.where(mask, jax.nn.relu(x), 0)`, i.e. of
  `jax.nn.relu(mask_time(x, lengths))`; checked by
  `tests/ops_test.py::test_masked_relu_gradient_is_autodiffs`.

  The gradient is taken from the output, `g` where `y > 0`: the same numbers
  autodiff gives (`g` where the step is valid and `x > 0`), but the backward
  pass needs only `y`, which the next layer keeps anyway, not `x` as well
  (about 90 MiB less per step at 400 frames).

  Args:
    x: `[batch, time, ...]` pre-activations.
    lengths: `[batch]` int, the valid steps of each row.

  Returns:
    The masked ReLU of `x`, shaped like `x`.
  """
  return jax.nn.relu(mask_time(x, lengths))


def _masked_relu_fwd(x, lengths):
  y = masked_relu(x, lengths)
  return y, y


def _masked_relu_bwd(y, g):
  return jnp.where(y > 0, g, jnp.zeros((), g.dtype)), None


masked_relu.defvjp(_masked_relu_fwd, _masked_relu_bwd)


# ----------------------------------------------------------------------------
# Max-pool.
# ----------------------------------------------------------------------------


def _pool_windows(x: jax.Array, size: int) -> jax.Array:
  """`[B, T, F, C] -> [B, T // size, size, F // size, size, C]`, VALID crop."""
  b, t, f, c = x.shape
  t, f = t // size, f // size
  return x[:, :t * size, :f * size].reshape(b, t, size, f, size, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def max_pool(x: jax.Array, size: int) -> jax.Array:
  """VALID square max-pool with stride = size, `[B, T, F, C]`.

  Reference: `flax.linen.max_pool(x, (size, size), strides=(size, size))`,
  i.e. `lax.reduce_window(x, -inf, lax.max, ...)`; values and gradient are
  checked by `tests/ops_test.py::test_max_pool_matches_flax_max_pool_with_ties`.

  The same values (a max over a reshape) and the same gradient: all of it
  to the first maximum of each window in row-major order, as XLA's
  select-and-scatter does. Written out because on CPU the gradient of
  `reduce_window` lowers to index iotas, a variadic reduce-window and a
  scatter, about a fifth of a training step; here forward and backward are
  each one elementwise pass.

  Args:
    x: `[B, T, F, C]`.
    size: window size and stride, along time and frequency.

  Returns:
    `[B, T // size, F // size, C]`.
  """
  return jnp.max(_pool_windows(x, size), axis=(2, 4))


def _max_pool_fwd(x, size):
  peak = max_pool(x, size)
  return peak, (x, peak)  # the next layer keeps `peak` anyway


def _max_pool_bwd(size, residuals, g):
  x, peak = residuals  # peak: [B, T', F', C]
  windows = _pool_windows(x, size)  # [B, T', size, F', size, C]
  taken = jnp.zeros(peak.shape, bool)
  rows = []
  for i in range(size):
    cols = []
    for j in range(size):
      hit = windows[:, :, i, :, j] == peak
      cols.append(jnp.where(hit & ~taken, g, jnp.zeros((), g.dtype)))
      taken = taken | hit
    rows.append(jnp.stack(cols, axis=3))  # [B, T', F', size, C]
  dx = jnp.stack(rows, axis=2)  # [B, T', size, F', size, C]
  b, t, f, c = x.shape
  dx = dx.reshape(b, dx.shape[1] * size, dx.shape[3] * size, c)
  # Rows and columns the VALID pool drops get no gradient.
  return (jnp.pad(dx, ((0, 0), (0, t - dx.shape[1]), (0, f - dx.shape[2]),
                       (0, 0))),)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


# ----------------------------------------------------------------------------
# The bidirectional GRU.
# ----------------------------------------------------------------------------


class GRUWeights(NamedTuple):
  """One GRU direction's parameters, gates stacked in the order (r, z, n).

  Attributes:
    w_i: `[inputs, 3H]` input kernels of `ir`, `iz`, `in`.
    b_i: `[3H]` their biases.
    w_h: `[H, 3H]` recurrent kernels of `hr`, `hz`, `hn`.
    b_hn: `[H]` the bias of `hn` (the only recurrent one).
  """
  w_i: jax.Array
  b_i: jax.Array
  w_h: jax.Array
  b_hn: jax.Array


def gru_weights(cell: dict) -> GRUWeights:
  """Stacks the parameters of a flax `nn.GRUCell` into `GRUWeights`.

  Args:
    cell: `{'ir': {'kernel', 'bias'}, 'iz': ..., 'in': ..., 'hr': {'kernel'},
      'hz': {'kernel'}, 'hn': {'kernel', 'bias'}}`, as flax names them.

  Returns:
    The same numbers, gates stacked in the order (r, z, n).
  """
  gates = ('r', 'z', 'n')
  return GRUWeights(
      w_i=jnp.concatenate([cell['i' + g]['kernel'] for g in gates], axis=1),
      b_i=jnp.concatenate([cell['i' + g]['bias'] for g in gates]),
      w_h=jnp.concatenate([cell['h' + g]['kernel'] for g in gates], axis=1),
      b_hn=cell['hn']['bias'])


class _DenseParams(nn.Module):
  """The `kernel` (and `bias`) an `nn.Dense` of this name would create."""
  features: int
  use_bias: bool
  kernel_init: Any
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs: int):
    kernel = self.param('kernel', self.kernel_init, (inputs, self.features),
                        self.param_dtype)
    if not self.use_bias:
      return kernel, None
    return kernel, self.param('bias', nn.initializers.zeros_init(),
                              (self.features,), self.param_dtype)


class GRUParams(nn.Module):
  """The parameters of a flax `nn.GRUCell`: same names, shapes, initialisers.

  Called with the input size, returns them as `GRUWeights` for `bigru`. A
  `GRUParams(units, name='gru_fw')` holds what `nn.GRUCell(units,
  name='gru_fw')` would, initialised to the same numbers from the same key,
  so seeds and checkpoints mean what they meant with flax's cell (checked by
  `tests/ops_test.py::test_bigru_equals_flax_rnn`).

  Attributes:
    units: the hidden size `H`.
    param_dtype: parameter dtype.
  """
  units: int
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs: int) -> GRUWeights:
    cell = {}
    for gate, size, use_bias, init in (
        ('ir', inputs, True, nn.initializers.lecun_normal()),
        ('iz', inputs, True, nn.initializers.lecun_normal()),
        ('in', inputs, True, nn.initializers.lecun_normal()),
        ('hr', self.units, False, nn.initializers.orthogonal()),
        ('hz', self.units, False, nn.initializers.orthogonal()),
        ('hn', self.units, True, nn.initializers.orthogonal())):
      kernel, bias = _DenseParams(self.units, use_bias, init,
                                  self.param_dtype, name=gate)(size)
      cell[gate] = {'kernel': kernel, 'bias': bias}
    return gru_weights(cell)


class TF1GRUParams(nn.Module):
  """The parameters of TF1's `tf.nn.rnn_cell.GRUCell` (the authors' code).

  A gates kernel `[D + H, 2H]` (reset, update) and a candidate kernel
  `[D + H, H]` over `[x, h]`, Glorot-uniform; gate bias 1, candidate bias 0.
  As `GRUWeights` (`b_hn` zero, unused) for `bigru(..., reset_before=True)`.

  Attributes:
    units: the hidden size `H`.
    param_dtype: parameter dtype.
  """
  units: int
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs: int) -> GRUWeights:
    size, h = inputs + self.units, self.units
    glorot = nn.initializers.glorot_uniform()
    gates = self.param('gates_kernel', glorot, (size, 2 * h), self.param_dtype)
    gates_bias = self.param('gates_bias', nn.initializers.ones, (2 * h,),
                            self.param_dtype)
    cand = self.param('candidate_kernel', glorot, (size, h), self.param_dtype)
    cand_bias = self.param('candidate_bias', nn.initializers.zeros, (h,),
                           self.param_dtype)
    return GRUWeights(
        w_i=jnp.concatenate([gates[:inputs], cand[:inputs]], axis=1),
        b_i=jnp.concatenate([gates_bias, cand_bias]),
        w_h=jnp.concatenate([gates[inputs:], cand[inputs:]], axis=1),
        b_hn=jnp.zeros((h,), self.param_dtype))


def _gru_update(h, xk, w_h, b_hn, reset_before: bool):
  """One GRU step of both directions: `h [2, B, H]`, `xk [2, B, 3H]` (the
  input projections), gates in the order (r, z, n)."""
  units = h.shape[-1]
  if reset_before:  # the candidate's recurrent matmul waits for r
    hh = jnp.einsum('dbh,dhk->dbk', h, w_h[..., :2 * units])  # [2, B, 2H]
  else:
    hh = jnp.einsum('dbh,dhk->dbk', h, w_h)  # [2, B, 3H]
  r = jax.nn.sigmoid(xk[..., :units] + hh[..., :units])
  z = jax.nn.sigmoid(xk[..., units:2 * units] + hh[..., units:2 * units])
  if reset_before:
    n = jnp.tanh(xk[..., 2 * units:]
                 + jnp.einsum('dbh,dhk->dbk', r * h, w_h[..., 2 * units:]))
  else:
    n = jnp.tanh(xk[..., 2 * units:] + r * (hh[..., 2 * units:] + b_hn))
  return (1.0 - z) * n + z * h


def bigru(x: jax.Array, lengths: jax.Array, fw: GRUWeights,
          bw: GRUWeights, *, reset_before: bool = False) -> jax.Array:
  """Bidirectional GRU readout, `[B, T, D] -> [B, 2H]`.

  Reference: flax's `nn.RNN(nn.GRUCell)` run forward and with
  `reverse=True`, both with `seq_lengths=lengths` and `return_carry=True`,
  the two final carries concatenated; checked, outputs and gradients, by
  `tests/ops_test.py::test_bigru_equals_flax_rnn`.

  The equations of flax's `GRUCell`, with the input projections of every
  step and both directions computed up front in one matmul (flax's cell does
  three small ones per step), and both directions advanced by one scan.

  Sequence lengths: a state is updated only at steps below the length, so
  the forward state ends as it was at step `length - 1`; the backward
  direction walks from step `T - 1` down to 0 and stays at zero until it
  reaches `length - 1`, so it reads exactly the reversed valid part (what
  flax's `flip_sequences` gives) and ends at its output for step 0.

  Args:
    x: `[B, T, D]` input sequences.
    lengths: `[B]` int, the valid steps of each sequence (at least 1).
    fw: the forward direction's weights.
    bw: the backward direction's weights.
    reset_before: TF1's `GRUCell` instead (`TF1GRUParams`): the reset gate
      multiplies the state before the candidate's matmul, `n = tanh(x W_in +
      b_in + (r * h) W_hn)`, with no `b_hn`; checked against a NumPy
      transcription of TF1's equations by
      `tests/ops_test.py::test_bigru_reset_before_equals_tf1_equations`.

  Returns:
    `[B, 2H]`: the forward state at the last valid step, then the backward
    state at step 0.
  """
  batch, steps, _ = x.shape
  units = fw.w_h.shape[0]
  w_i = jnp.concatenate([fw.w_i, bw.w_i], axis=1)  # [D, 6H]
  b_i = jnp.concatenate([fw.b_i, bw.b_i])
  xi = (x @ w_i + b_i).reshape(batch, steps, 2, 3 * units)
  # [T, 2, B, 3H]: time-major; the backward direction from the last step.
  xs = jnp.stack([xi[:, :, 0], xi[:, ::-1, 1]]).transpose(2, 0, 1, 3)
  w_h = jnp.stack([fw.w_h, bw.w_h])  # [2, H, 3H]
  b_hn = jnp.stack([fw.b_hn, bw.b_hn])[:, None, :]  # [2, 1, H]

  def step(h, inputs):  # h: [2, B, H]
    k, xk = inputs
    new = _gru_update(h, xk, w_h, b_hn, reset_before)
    at = jnp.stack([k, steps - 1 - k])  # the time step of each direction
    valid = at[:, None, None] < lengths[None, :, None]  # [2, B, 1]
    return jnp.where(valid, new, h), None

  h0 = jnp.zeros((2, batch, units), xs.dtype)
  h, _ = jax.lax.scan(step, h0, (jnp.arange(steps), xs))
  return jnp.concatenate([h[0], h[1]], axis=-1)


# ----------------------------------------------------------------------------
# The Mel product of the features.


def _band_groups(filterbank: np.ndarray, groups: int = 8):
  """`(bins, bands)` slices: runs of consecutive bands and the bins they use.

  Each Mel band is a triangle over a few neighbouring bins, so the bank is
  mostly zeros. Cut into `groups` runs of consecutive bands, each run needs
  only the bins under its triangles: with 8 runs the products do about an
  eighth of the dense product's work. `bins` is None for a run of empty bands.
  """
  num_bands = filterbank.shape[1]
  edges = np.linspace(0, num_bands, min(groups, num_bands) + 1).astype(int)
  out = []
  for lo, hi in zip(edges[:-1], edges[1:]):
    rows = np.flatnonzero(filterbank[:, lo:hi].any(axis=1))
    bins = slice(rows[0], rows[-1] + 1) if rows.size else None
    out.append((bins, slice(lo, hi)))
  return out


def apply_filterbank(power, filterbank: np.ndarray):
  """`power @ filterbank` over the last axis, skipping the bank's zero blocks.

  Args:
    power: `[..., bins]`.
    filterbank: a static `[bins, bands]` NumPy array (`mel_filterbank`).

  Returns:
    `[..., bands]`, equal to the dense product up to float rounding.
  """
  parts = []
  for bins, bands in _band_groups(filterbank):
    if bins is None:
      parts.append(jnp.zeros(power.shape[:-1] + (bands.stop - bands.start,), power.dtype))
    else:
      parts.append(jnp.einsum('...f,fm->...m', power[..., bins], filterbank[bins, bands],
                              precision=jax.lax.Precision.HIGHEST))
  return jnp.concatenate(parts, axis=-1)
