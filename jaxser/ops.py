"""Fast kernels for the CNN-BiGRU, each beside the plain code it replaces.

Why they exist: each op here computes what a plain JAX or Flax formulation
computes (the same values and the same gradients), but the plain one was
measured to be slow on CPU (docs/performance.md, "What each optimisation
bought"). Together, the max-pool, masked ReLU and BiGRU below took the
paper model's log-Mel training step (batch 32, 400 frames) from 25.8 to
37.6 utterances/s (x1.46) and its XLA buffers from 1088 to 432 MiB.

Each op names its reference, and a test in tests/ops_test.py checks it
against that reference. The ops are plain JAX (no flax), so the features
and an exported model's loader use them without the training stack:

* `max_pool`: `flax.linen.max_pool` (VALID, stride = size);
  `test_max_pool_matches_flax_max_pool_with_ties`.
* `masked_relu`: plain autodiff of `jnp.where(mask, relu(x), 0)`;
  `test_masked_relu_gradient_is_autodiffs`.
* `gru.bigru` (in its own module, `jaxser/gru.py`, with the GRU's
  parameters): flax's `nn.RNN(nn.GRUCell)` in both directions with
  `seq_lengths`; `test_bigru_equals_flax_rnn`.
* `apply_filterbank` (the log-Mel features' Mel product, skipping the
  filterbank's zero blocks: 78 -> 71 ms a batch): the dense product
  `power @ filterbank`;
  `features_test.py::test_banded_filterbank_product_equals_the_dense_product`.

A faster formulation replacing any of them must pass the same test.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ['apply_filterbank', 'mask_time', 'masked_relu', 'max_pool']


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
