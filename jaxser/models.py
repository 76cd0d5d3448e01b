"""The CNN-BiGRU of Dai et al. (the authors' "MelModel11"), in Flax Linen.

The input is a padded batch of spectrograms `[batch, frames, bins]` with the
number of valid frames of each utterance. It is treated as an image with one
channel and goes through VALID convolutions and max-pools (ReLU after each
conv), is reshaped to a sequence `[batch, steps, bins' * channels]`, read by a
bidirectional GRU with sequence lengths, and ends with FC1 + PReLU (the
embedding `z` the centre loss works on) and FC2 (the logits)
(docs/method.md, Model). The masked ReLU, the max-pool and the BiGRU run as
the measured fast kernels of `jaxser.ops`, each checked against its plain
Flax reference.

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
from typing import Any, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxser import gru
from jaxser import ops
from jaxser import standardize

__all__ = [
    'CRNN',
    'ConvSpec',
    'KERNEL_INITS',
    'PAPER_CONVS',
    'PerUnitPReLU',
    'min_frames',
    'output_length',
    'pad_to_min_frames',
    'sequence_shape',
    'valid_length',
]


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


# The paper's layout (docs/method.md, Model): conv1 48@7x7/2 without pooling,
# then 64, 80, 96 @3x3, each followed by a 2x2 max-pool with stride 2.
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
  features = ops.mask_time(features, frame_lengths)
  frame_lengths = jnp.clip(frame_lengths, minimum, max(frames, minimum))
  return features, frame_lengths.astype(jnp.int32)


# ----------------------------------------------------------------------------
# The model.
# ----------------------------------------------------------------------------

# The conv and dense kernels' initialisers by name: flax's default, and TF1's
# (`tf.layers` and `tf.keras` layers default to Glorot-uniform).
KERNEL_INITS = {'lecun_normal': nn.initializers.lecun_normal(),
                'glorot_uniform': nn.initializers.glorot_uniform()}


class PerUnitPReLU(nn.Module):
  """Keras' `PReLU`: `max(0, x) + a * min(0, x)` with one slope `a` per unit
  (the last axis), initialised at 0 (the authors' code); flax's `nn.PReLU`
  has one slope for all units, initialised at 0.01."""
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    slope = self.param('negative_slope', nn.initializers.zeros, (x.shape[-1],),
                       self.param_dtype)
    return jnp.where(x >= 0, x, jnp.asarray(slope, x.dtype) * x)


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
      TF1 code does (it passes one cell object to both); two independent
      GRUs by default.
    gru_cell: 'flax' (flax's `nn.GRUCell`: the reset gate applied to the
      recurrent projection) or 'tf1' (TF1's `GRUCell`, the authors' code:
      applied to the state before it, gate bias 1, Glorot kernels).
    prelu: 'scalar' (flax's `nn.PReLU`: one slope, initialised at 0.01) or
      'per_unit' (Keras' `PReLU`, the authors' code: one slope per unit,
      initialised at 0).
    kernel_init: the conv and dense kernels' initialiser: 'lecun_normal'
      (flax's default) or 'glorot_uniform' (TF1's, the authors' code).
    utterance_norm: 'none' (the paper), 'mean' or 'mean_var': each
      utterance's own per-bin mean (and std) removed from its features first
      (`standardize.normalize_utterances`), in every use of the model
      (training, evaluation, prediction, export).
    dtype: computation dtype.
    param_dtype: parameter dtype.
  """
  num_classes: int = 4
  convs: Sequence[ConvSpec] = PAPER_CONVS
  gru_units: int = 128
  embedding_dim: int = 64
  share_gru_weights: bool = False
  gru_cell: str = 'flax'
  prelu: str = 'scalar'
  kernel_init: str = 'lecun_normal'
  utterance_norm: str = 'none'
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
    if self.utterance_norm != 'none':
      features = standardize.normalize_utterances(
          features, frame_lengths, variance=self.utterance_norm == 'mean_var')
    x, lengths = pad_to_min_frames(features, frame_lengths, self.convs)
    seq_shape = sequence_shape(x.shape[1], x.shape[2], self.convs)
    x = self._conv_stack(x[..., None], lengths)  # [B, T', F', C]
    lengths = output_length(lengths, self.convs)  # >= 1 after the padding
    x = x.reshape(x.shape[:2] + (-1,))  # [B, T', F' * C]
    chex.assert_shape(x, (batch,) + seq_shape)
    self.sow('intermediates', 'gru_inputs', x)
    h = self._bigru(x, lengths)  # [B, 2 * gru_units]
    z = nn.Dense(self.embedding_dim, dtype=self.dtype,
                 kernel_init=self._kernel_init(), param_dtype=self.param_dtype,
                 name='fc1')(h)
    if self.prelu == 'per_unit':
      z = PerUnitPReLU(param_dtype=self.param_dtype, name='prelu')(z)
    else:
      z = nn.PReLU(param_dtype=self.param_dtype, name='prelu')(z)
    logits = nn.Dense(self.num_classes, dtype=self.dtype,
                      kernel_init=self._kernel_init(), param_dtype=self.param_dtype,
                      name='fc2')(z)
    chex.assert_shape(logits, (batch, self.num_classes))
    chex.assert_shape(z, (batch, self.embedding_dim))
    return logits, z

  def _conv_stack(self, x: jax.Array, lengths: jax.Array) -> jax.Array:
    """Convs, length masks, ReLUs, pools: `[B, T, F, 1] -> [B, T', F', C]`."""
    # Plain `nn.Conv`: it compiles to the same convolutions as a hand-written
    # `lax.conv_general_dilated`, with the same parameters (`convN/kernel`,
    # `convN/bias`); only the ReLU and the pool need faster kernels.
    for i, spec in enumerate(self.convs):
      x = nn.Conv(spec.features, (spec.kernel, spec.kernel),
                  strides=spec.stride, padding='VALID', dtype=self.dtype,
                  kernel_init=self._kernel_init(),
                  param_dtype=self.param_dtype, name=f'conv{i + 1}')(x)
      lengths = valid_length(lengths, spec.kernel, spec.stride)
      x = ops.masked_relu(x, lengths)
      if spec.pool:
        x = ops.max_pool(x, spec.pool)
        lengths = valid_length(lengths, spec.pool, spec.pool)
    return x

  def _kernel_init(self):
    if self.kernel_init not in KERNEL_INITS:
      raise ValueError(f'CRNN.kernel_init={self.kernel_init!r}: one of '
                       f'{", ".join(KERNEL_INITS)}')
    return KERNEL_INITS[self.kernel_init]

  def _bigru(self, x: jax.Array, lengths: jax.Array) -> jax.Array:
    """[forward at the last valid step, backward at step 0], `[B, 2H]`."""
    # The parameters sit where flax's `nn.GRUCell` puts them (`gru_fw/ir`,
    # ...), so checkpoints and the readout test see flax's GRU.
    if self.gru_cell not in ('flax', 'tf1'):
      raise ValueError(f"CRNN.gru_cell={self.gru_cell!r}: 'flax' or 'tf1'")
    params = gru.TF1GRUParams if self.gru_cell == 'tf1' else gru.GRUParams
    if self.share_gru_weights:
      forward = backward = params(self.gru_units, self.param_dtype, name='gru')
    else:
      forward = params(self.gru_units, self.param_dtype, name='gru_fw')
      backward = params(self.gru_units, self.param_dtype, name='gru_bw')
    fw, bw = forward(x.shape[-1]), backward(x.shape[-1])
    x, *weights = nn.dtypes.promote_dtype(x, *fw, *bw, dtype=self.dtype)
    fw, bw = gru.GRUWeights(*weights[:4]), gru.GRUWeights(*weights[4:])
    return gru.bigru(x, lengths, fw, bw, reset_before=self.gru_cell == 'tf1')
