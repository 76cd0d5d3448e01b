"""The fast bidirectional GRU and its parameters.

`bigru` runs both directions of a GRU over padded sequences in one scan,
with the input projections of every step computed up front (measured in
docs/performance.md); `GRUParams` holds the parameters of a flax
`nn.GRUCell` (same names, shapes and initial numbers) and `TF1GRUParams`
those of TF1's `GRUCell` (the authors' code), both as `GRUWeights`.
Checked against flax's `nn.RNN(nn.GRUCell)` and a NumPy transcription of
TF1's equations in tests/ops_test.py.
"""

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ['GRUParams', 'GRUWeights', 'TF1GRUParams', 'bigru', 'gru_weights']


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
