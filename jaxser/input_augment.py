"""Augmentation of a training batch's spectrograms, inside the jitted step.

Pure functions of an explicit PRNG key, as `jax.random` wants them; the
train step derives the key from its state's (`fold_in(rng, step)`), so a
resumed run draws the same masks. Every function changes only the valid
frames of each utterance (`frame_lengths`), never its padding, and works on
the standardised features the step sees (0 is the training split's mean).

- `time_masks`: SpecAugment's time masking (Park et al. 2019): `count`
  masks per utterance, each of a width drawn uniformly from
  `[0, max_width]` frames, no wider than the utterance, at a uniform start
  within it; masked frames are set to 0.
- `freq_masks`: SpecAugment's frequency masking: `count` bands of
  `[0, max_width]` bins per utterance, set to 0 on its valid frames.
- `gain_tilt`: a random level change and spectral tilt in dB: each
  utterance gets `g ~ U[-max_gain_db, max_gain_db]` plus a tilt rising
  linearly across the bins from `-t/2` to `+t/2`, `t ~ U[-max_tilt_db,
  max_tilt_db]`; divided by the per-bin std of the standardiser, so the
  change is the same as in dB on the features before standardisation.

`InputAugment` holds the settings (`config.input_augment`, all off in the
paper's configs) and `apply` runs the enabled ones: level and tilt first,
then the masks, so masked values are exactly 0.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxser.features import frame_mask

__all__ = ['InputAugment', 'apply', 'freq_masks', 'gain_tilt', 'time_masks']


class InputAugment(NamedTuple):
  """What `apply` does; zeros switch a kind off (hashable: a jit static)."""
  time_masks: int = 0  # SpecAugment time masks per utterance
  time_mask_width: int = 0  # their largest width, in frames
  freq_masks: int = 0  # SpecAugment frequency masks per utterance
  freq_mask_width: int = 0  # their largest width, in bins
  gain_db: float = 0.0  # level change, U[-gain_db, gain_db] dB
  tilt_db: float = 0.0  # spectral tilt across the bins, U[-tilt_db, tilt_db] dB

  @property
  def enabled(self) -> bool:
    return bool((self.time_masks and self.time_mask_width)
                or (self.freq_masks and self.freq_mask_width)
                or self.gain_db or self.tilt_db)


def _bands(key, count: int, max_width: int, limit):
  """`count` bands per row, `[batch, count]` starts and widths, inside `limit`.

  Widths are uniform in `[0, max_width]`, cut to the row's `limit`; starts
  uniform in `[0, limit - width]`.
  """
  width_key, start_key = jax.random.split(key)
  batch = limit.shape[0]
  widths = jax.random.randint(width_key, (batch, count), 0, max_width + 1)
  widths = jnp.minimum(widths, limit[:, None])
  room = limit[:, None] - widths + 1  # possible starts, >= 1
  starts = jnp.floor(jax.random.uniform(start_key, (batch, count)) * room).astype(jnp.int32)
  return starts, widths


def _in_bands(positions, starts, widths):
  """`[batch, n]` bool: position inside any of a row's bands."""
  p = positions[None, :, None]
  return jnp.any((p >= starts[:, None, :]) & (p < (starts + widths)[:, None, :]), axis=-1)


def time_masks(key, features, frame_lengths, *, count: int, max_width: int):
  """SpecAugment time masks on each utterance's valid frames (set to 0)."""
  frames = features.shape[1]
  starts, widths = _bands(key, count, max_width, jnp.asarray(frame_lengths, jnp.int32))
  masked = _in_bands(jnp.arange(frames), starts, widths)  # inside [0, length)
  return jnp.where(masked[..., None], 0.0, features)


def freq_masks(key, features, frame_lengths, *, count: int, max_width: int):
  """SpecAugment frequency masks: bands of bins set to 0 on valid frames."""
  batch, frames, bins = features.shape
  starts, widths = _bands(key, count, max_width, jnp.full((batch,), bins, jnp.int32))
  masked = _in_bands(jnp.arange(bins), starts, widths)[:, None, :]
  valid = frame_mask(frame_lengths, frames)[..., None]
  return jnp.where(masked & valid, 0.0, features)


def gain_tilt(key, features, frame_lengths, inv_std, *, gain_db: float, tilt_db: float):
  """A random level and tilt in dB per utterance, on its valid frames.

  Args:
    key: the PRNG key.
    features: `[batch, frames, bins]` standardised features.
    frame_lengths: `[batch]`.
    inv_std: `[bins]`, 1 / the standardiser's std (dB -> standardised units).
    gain_db, tilt_db: the largest level change and tilt.
  """
  batch, frames, bins = features.shape
  gain_key, tilt_key = jax.random.split(key)
  gain = jax.random.uniform(gain_key, (batch, 1), minval=-gain_db, maxval=gain_db)
  tilt = jax.random.uniform(tilt_key, (batch, 1), minval=-tilt_db, maxval=tilt_db)
  ramp = jnp.linspace(-0.5, 0.5, bins)[None, :]
  shift = (gain + tilt * ramp) * jnp.asarray(inv_std)[None, :]  # [batch, bins]
  valid = frame_mask(frame_lengths, frames)[..., None]
  return jnp.where(valid, features + shift[:, None, :], features)


def apply(key, features, frame_lengths, settings: InputAugment, inv_std=None):
  """The enabled augmentations of `settings`, each with its own key."""
  time_key, freq_key, level_key = jax.random.split(key, 3)
  if settings.gain_db or settings.tilt_db:
    features = gain_tilt(level_key, features, frame_lengths, inv_std,
                         gain_db=settings.gain_db, tilt_db=settings.tilt_db)
  if settings.freq_masks and settings.freq_mask_width:
    features = freq_masks(freq_key, features, frame_lengths, count=settings.freq_masks,
                          max_width=settings.freq_mask_width)
  if settings.time_masks and settings.time_mask_width:
    features = time_masks(time_key, features, frame_lengths, count=settings.time_masks,
                          max_width=settings.time_mask_width)
  return features
