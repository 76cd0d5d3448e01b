"""The CNN-BiGRU of Dai et al. (the authors' "MelModel11"), in Flax Linen.

The input is a padded batch of spectrograms `[batch, frames, bins]` with the
number of valid frames of each utterance. It is treated as an image with one
channel and goes through VALID convolutions and max-pools (ReLU after each
conv), is reshaped to a sequence `[batch, steps, bins' * channels]`, read by a
bidirectional GRU with sequence lengths, and ends with FC1 + PReLU (the
embedding `z` the centre loss works on) and FC2 (the logits).

Padding never changes the result for an utterance:

* every conv and pool shrinks the lengths with one formula,
  `valid_length(L, k, s) = 1 + (L - k) // s`, and conv outputs at time steps
  at or beyond the propagated length are zeroed before the ReLU (as the
  authors' code does); with VALID padding a step below the length only sees
  valid input;
* the forward GRU is read at the last valid step of each utterance, and the
  backward GRU starts at that step and is read at step 0.

Utterances shorter than `min_frames(convs)` (49 frames for the paper's
layout) would yield no GRU step. `pad_to_min_frames` is the one place that
handles them: they are zero-padded up to the minimum, so they still yield one
GRU step. `CRNN` calls it on every input.
"""

from collections.abc import Sequence
import functools
import os
from typing import Any, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp


class ConvSpec(NamedTuple):
  """One square VALID conv layer, ReLU, and an optional max-pool.

  Attributes:
    features: output channels.
    kernel: kernel size, the same along time and frequency.
    stride: stride, the same along time and frequency.
    pool: size and stride of the square max-pool that follows the ReLU; 0 for
      none.
  """
  features: int
  kernel: int
  stride: int = 1
  pool: int = 0


# SPEC section 2: conv1 48@7x7/2 without pooling, then 64, 80, 96 @3x3, each
# followed by a 2x2 max-pool with stride 2.
PAPER_CONVS = (
    ConvSpec(features=48, kernel=7, stride=2, pool=0),
    ConvSpec(features=64, kernel=3, stride=1, pool=2),
    ConvSpec(features=80, kernel=3, stride=1, pool=2),
    ConvSpec(features=96, kernel=3, stride=1, pool=2),
)


# ----------------------------------------------------------------------------
# Length arithmetic: the one formula, and what follows from it.
# ----------------------------------------------------------------------------


def valid_length(length, window, stride):
  """Length after a VALID conv or pool: `1 + (length - window) // stride`.

  The only place this formula is written. Works on Python ints and on integer
  arrays alike.

  Args:
    length: input length(s).
    window: kernel or pool size.
    stride: stride.

  Returns:
    The output length(s); values below 1 mean the input was too short.
  """
  return 1 + (length - window) // stride


def _windows(convs: Sequence[ConvSpec]):
  """Yields the `(window, stride)` of every conv and pool, in order."""
  for spec in convs:
    yield spec.kernel, spec.stride
    if spec.pool:
      yield spec.pool, spec.pool


def output_length(length, convs: Sequence[ConvSpec] = PAPER_CONVS):
  """Length (time or frequency) after the whole conv stack.

  Args:
    length: input length(s), a Python int or an integer array.
    convs: the conv layers.

  Returns:
    The length(s) after the last conv or pool.
  """
  for window, stride in _windows(convs):
    length = valid_length(length, window, stride)
  return length


def min_frames(convs: Sequence[ConvSpec] = PAPER_CONVS) -> int:
  """The shortest input that yields one step after the conv stack.

  Inverts `valid_length` layer by layer from the top: a layer outputs one
  step from `window` inputs, and `n` steps from `(n - 1) * stride + window`.

  Args:
    convs: the conv layers.

  Returns:
    The minimum number of input frames (49 for `PAPER_CONVS`).
  """
  frames = 1
  for window, stride in reversed(list(_windows(convs))):
    frames = (frames - 1) * stride + window
  return frames


def sequence_shape(frames: int, bins: int,
                   convs: Sequence[ConvSpec] = PAPER_CONVS) -> tuple[int, int]:
  """Shape `(steps, features)` of the sequence the GRU reads, per utterance.

  Args:
    frames: input frames (after `pad_to_min_frames`).
    bins: frequency bins of the input.
    convs: the conv layers.

  Returns:
    `(steps, bins' * channels)`, e.g. `(85, 480)` for 1400 frames of 128
    Mel bins with the paper's layout, `(85, 2880)` for 513 STFT bins.
  """
  return (output_length(frames, convs),
          output_length(bins, convs) * convs[-1].features)


def pad_to_min_frames(features: jax.Array, frame_lengths: jax.Array,
                      convs: Sequence[ConvSpec] = PAPER_CONVS):
  """Zero-pads short utterances up to `min_frames(convs)`.

  The one place the minimum input length is enforced. Short utterances are
  zero-padded up to the minimum so they still yield one GRU step:

  * the time axis is padded with zeros up to the minimum (a static shape
    change, only when the batch is shorter);
  * frames at or beyond each utterance's length are set to zero, so the
    padding an utterance is given does not depend on what its batch holds;
  * lengths are clipped to `[min_frames, frames]`; a length of 0 (an empty
    padding example) becomes an all-zero utterance of the minimum length.

  Args:
    features: `[batch, frames, bins]` spectrograms.
    frame_lengths: `[batch]` int, the valid frames of each utterance.
    convs: the conv layers that set the minimum.

  Returns:
    `(features, frame_lengths)` with at least `min_frames(convs)` frames and
    every length in `[min_frames(convs), frames]`.
  """
  chex.assert_rank(features, 3)
  chex.assert_shape(frame_lengths, (features.shape[0],))
  minimum = min_frames(convs)
  frames = features.shape[1]
  if frames < minimum:
    features = jnp.pad(features, ((0, 0), (0, minimum - frames), (0, 0)))
  features = _mask_time(features, frame_lengths)
  frame_lengths = jnp.clip(frame_lengths, minimum, max(frames, minimum))
  return features, frame_lengths.astype(jnp.int32)


# ----------------------------------------------------------------------------
# The ops, one small pure function each, so the formulation can be swapped.
# ----------------------------------------------------------------------------


def _mask_time(x: jax.Array, lengths: jax.Array) -> jax.Array:
  """Zeros `x[b, t, ...]` for every `t >= lengths[b]`."""
  valid = jnp.arange(x.shape[1])[None, :] < lengths[:, None]  # [batch, time]
  valid = valid.reshape(valid.shape + (1,) * (x.ndim - 2))
  return jnp.where(valid, x, jnp.zeros((), x.dtype))


@jax.custom_vjp
def _masked_relu(x: jax.Array, lengths: jax.Array) -> jax.Array:
  """`relu(_mask_time(x, lengths))`: the authors mask before the ReLU.

  The gradient is taken from the output, `g` where `y > 0`: the same numbers
  autodiff gives (`g` where the step is valid and `x > 0`), but the backward
  pass needs only `y`, which the next layer keeps anyway, not `x` as well
  (about 90 MiB less per step at 400 frames).
  """
  return jax.nn.relu(_mask_time(x, lengths))


def _masked_relu_fwd(x, lengths):
  y = _masked_relu(x, lengths)
  return y, y


def _masked_relu_bwd(y, g):
  return jnp.where(y > 0, g, jnp.zeros((), g.dtype)), None


_masked_relu.defvjp(_masked_relu_fwd, _masked_relu_bwd)


def _conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array,
            stride: int) -> jax.Array:
  """VALID 2-D convolution, `[B, T, F, Cin] -> [B, T', F', Cout]`."""
  y = jax.lax.conv_general_dilated(
      x, kernel, window_strides=(stride, stride), padding='VALID',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return y + bias


def _pool_windows(x: jax.Array, size: int) -> jax.Array:
  """`[B, T, F, C] -> [B, T // size, size, F // size, size, C]`, VALID crop."""
  b, t, f, c = x.shape
  t, f = t // size, f // size
  return x[:, :t * size, :f * size].reshape(b, t, size, f, size, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool(x: jax.Array, size: int) -> jax.Array:
  """VALID square max-pool with stride = size, `[B, T, F, C]`.

  The same values as `lax.reduce_window(x, -inf, max, ...)` (a max over a
  reshape), and the same gradient: all of it to the first maximum of each
  window in row-major order, as XLA's select-and-scatter does. Written out
  because on CPU the gradient of `reduce_window` lowers to index iotas, a
  variadic reduce-window and a scatter, about a fifth of a training step;
  here forward and backward are each one elementwise pass.
  """
  return jnp.max(_pool_windows(x, size), axis=(2, 4))


def _max_pool_fwd(x, size):
  peak = _max_pool(x, size)
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


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


class _Conv(nn.Module):
  """Holds the parameters of one conv layer and applies `_conv2d`."""
  spec: ConvSpec
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.spec.kernel
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (k, k, x.shape[-1], self.spec.features),
                        self.param_dtype)
    bias = self.param('bias', nn.initializers.zeros_init(),
                      (self.spec.features,), self.param_dtype)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias,
                                              dtype=self.dtype)
    return _conv2d(x, kernel, bias, self.spec.stride)


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


class _GRUParams(nn.Module):
  """The parameters of a flax `nn.GRUCell`: same names, shapes, initialisers.

  Called with the input size, returns them as `GRUWeights`.
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


def _bigru(x: jax.Array, lengths: jax.Array, fw: GRUWeights,
           bw: GRUWeights) -> jax.Array:
  """Bidirectional GRU readout, `[B, T, D] -> [B, 2H]`.

  The equations of flax's `GRUCell`, with the input projections of every
  step and both directions computed up front in one matmul (flax's cell does
  three small ones per step), and both directions advanced by one scan.

  Sequence lengths: a state is updated only at steps below the length, so
  the forward state ends as it was at step `length - 1`; the backward
  direction walks from step `T - 1` down to 0 and stays at zero until it
  reaches `length - 1`, so it reads exactly the reversed valid part (what
  flax's `flip_sequences` gives) and ends at its output for step 0.
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
    hh = jnp.einsum('dbh,dhk->dbk', h, w_h)  # [2, B, 3H]
    r = jax.nn.sigmoid(xk[..., :units] + hh[..., :units])
    z = jax.nn.sigmoid(xk[..., units:2 * units] + hh[..., units:2 * units])
    n = jnp.tanh(xk[..., 2 * units:] + r * (hh[..., 2 * units:] + b_hn))
    new = (1.0 - z) * n + z * h
    at = jnp.stack([k, steps - 1 - k])  # the time step of each direction
    valid = at[:, None, None] < lengths[None, :, None]  # [2, B, 1]
    return jnp.where(valid, new, h), None

  h0 = jnp.zeros((2, batch, units), xs.dtype)
  h, _ = jax.lax.scan(step, h0, (jnp.arange(steps), xs))
  return jnp.concatenate([h[0], h[1]], axis=-1)


# ----------------------------------------------------------------------------
# The model.
# ----------------------------------------------------------------------------


class CRNN(nn.Module):
  """CNN-BiGRU emotion classifier with an embedding for the centre loss.

  `model.apply(variables, features, frame_lengths) -> (logits, embeddings)`
  with `features` `[batch, frames, bins]` float32 (any number of bins, e.g.
  128 Mel or 513 STFT) and `frame_lengths` `[batch]` int32. Inputs shorter
  than `min_frames(convs)` are zero-padded up to it (`pad_to_min_frames`).
  The sequence the GRU reads, `[batch, steps, bins' * channels]`, is sown as
  `intermediates/gru_inputs`.

  Attributes:
    num_classes: number of emotion classes (FC2 outputs).
    convs: the conv layers; the paper's by default.
    gru_units: units of each GRU direction.
    embedding_dim: FC1 units, the size of the embedding `z`.
    share_gru_weights: use one GRU cell for both directions, as the authors'
      TF1 code may have done by passing one cell object to both; two
      independent GRUs by default.
    dtype: computation dtype.
    param_dtype: parameter dtype.
  """
  num_classes: int = 4
  convs: Sequence[ConvSpec] = PAPER_CONVS
  gru_units: int = 128
  embedding_dim: int = 64
  share_gru_weights: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: jax.Array, frame_lengths: jax.Array):
    """Computes logits and embeddings.

    Args:
      features: `[batch, frames, bins]` spectrograms, padded along time.
      frame_lengths: `[batch]` int, valid frames of each utterance.

    Returns:
      `(logits [batch, num_classes], embeddings [batch, embedding_dim])`.
    """
    batch = features.shape[0]
    chex.assert_rank(features, 3)
    chex.assert_shape(frame_lengths, (batch,))
    x, lengths = pad_to_min_frames(features, frame_lengths, self.convs)
    seq_shape = sequence_shape(x.shape[1], x.shape[2], self.convs)
    x = self._conv_stack(x[..., None], lengths)  # [B, T', F', C]
    lengths = output_length(lengths, self.convs)  # >= 1 after the padding
    x = x.reshape(x.shape[:2] + (-1,))  # [B, T', F' * C]
    chex.assert_shape(x, (batch,) + seq_shape)
    self.sow('intermediates', 'gru_inputs', x)
    h = self._bigru(x, lengths)  # [B, 2 * gru_units]
    z = nn.Dense(self.embedding_dim, dtype=self.dtype,
                 param_dtype=self.param_dtype, name='fc1')(h)
    z = nn.PReLU(param_dtype=self.param_dtype, name='prelu')(z)
    logits = nn.Dense(self.num_classes, dtype=self.dtype,
                      param_dtype=self.param_dtype, name='fc2')(z)
    chex.assert_shape(logits, (batch, self.num_classes))
    chex.assert_shape(z, (batch, self.embedding_dim))
    return logits, z

  def _conv_stack(self, x: jax.Array, lengths: jax.Array) -> jax.Array:
    """Convs, length masks, ReLUs, pools: `[B, T, F, 1] -> [B, T', F', C]`."""
    for i, spec in enumerate(self.convs):
      x = _Conv(spec, dtype=self.dtype, param_dtype=self.param_dtype,
                name=f'conv{i + 1}')(x)
      lengths = valid_length(lengths, spec.kernel, spec.stride)
      x = _masked_relu(x, lengths)
      if spec.pool:
        x = _max_pool(x, spec.pool)
        lengths = valid_length(lengths, spec.pool, spec.pool)
    return x

  def _bigru(self, x: jax.Array, lengths: jax.Array) -> jax.Array:
    """[forward at the last valid step, backward at step 0], `[B, 2H]`."""
    # The parameters sit where flax's `nn.GRUCell` puts them (`gru_fw/ir`,
    # ...), so checkpoints and the readout test see flax's GRU.
    if self.share_gru_weights:
      forward = backward = _GRUParams(self.gru_units, self.param_dtype,
                                      name='gru')
    else:
      forward = _GRUParams(self.gru_units, self.param_dtype, name='gru_fw')
      backward = _GRUParams(self.gru_units, self.param_dtype, name='gru_bw')
    fw, bw = forward(x.shape[-1]), backward(x.shape[-1])
    x, *weights = nn.dtypes.promote_dtype(x, *fw, *bw, dtype=self.dtype)
    fw, bw = GRUWeights(*weights[:4]), GRUWeights(*weights[4:])
    return _bigru(x, lengths, fw, bw)


# ----------------------------------------------------------------------------
# Compilation.
# ----------------------------------------------------------------------------

# XLA:CPU (jaxlib 0.10 here) hands convolutions, dots and reductions to
# YNNPACK by default. For this model's convolutions and their gradients
# YNNPACK was 2-3x slower than XLA's Eigen convolutions on the x86 machine of
# docs/performance.md; dots and reductions stay with YNNPACK, where they were
# faster. YNNPACK for elementwise fusions as well made the log-Mel training
# step 7-9 % faster there (400 and 1400 frames) but the log-STFT one (513
# bins) 1.7x slower, so it is asked for only on inputs of at most
# `_YNN_ELTWISE_MAX_BINS` bins. The option is experimental, hence the probe
# below.
_YNN_OPTION = 'xla_cpu_experimental_ynn_fusion_type'
_YNN_WITHOUT_CONVOLUTIONS = ('LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,'
                             'LIBRARY_FUSION_TYPE_REDUCE')
_YNN_ELTWISE = ',LIBRARY_FUSION_TYPE_ELTWISE'
_YNN_ELTWISE_MAX_BINS = 128


@functools.cache
def compiler_options(backend: str | None = None,
                     num_bins: int | None = None) -> dict[str, str]:
  """XLA options under which the model's programs run fastest.

  Pass them to `jax.jit(..., compiler_options=...)` for the train, eval and
  predict steps. They only concern the CPU backend: for others, when the
  user's `XLA_FLAGS` already set the option, or when this jaxlib does not
  know it, the result is empty and XLA's defaults apply.

  Args:
    backend: the platform the steps compile for; `jax.default_backend()` by
      default.
    num_bins: the frequency bins of the training step's input, when known:
      up to 128 (log-Mel), elementwise fusions go to YNNPACK too.

  Returns:
    A dict of XLA debug options (possibly empty).
  """
  backend = backend or jax.default_backend()
  if backend != 'cpu' or _YNN_OPTION in os.environ.get('XLA_FLAGS', ''):
    return {}
  candidates = [_YNN_WITHOUT_CONVOLUTIONS]
  if num_bins is not None and num_bins <= _YNN_ELTWISE_MAX_BINS:
    candidates.insert(0, _YNN_WITHOUT_CONVOLUTIONS + _YNN_ELTWISE)
  for fusion_types in candidates:
    options = {_YNN_OPTION: fusion_types}
    try:  # Unknown options fail at compile time: try them on a tiny program.
      jax.jit(jnp.negative).lower(
          jnp.zeros((), jnp.float32)).compile(compiler_options=options)
    except Exception:  # pylint: disable=broad-except
      continue
    return options
  return {}
