"""Per-bin standardisation of features, fitted on the training split only.

A pair of pure functions around an explicit `Standardizer` value, as optax
keeps its state: fit it on the training split (`fit_standardizer`, or the
running `Moments` for data that does not fit in memory), apply it anywhere
(`standardize`); padding frames stay 0. `normalize_utterances` is the
channel-robust option beside it: each utterance's own per-bin mean (and
std) removed, as cepstral mean (and variance) normalisation does.
"""

from typing import Iterable, NamedTuple

import chex
import jax.numpy as jnp
import numpy as np

from jaxser.features import frame_mask

__all__ = ['Moments', 'Standardizer', 'UTTERANCE_NORMS', 'fit_standardizer', 'moments_init',
           'moments_update', 'normalize_utterances', 'standardize',
           'standardizer_from_moments']

UTTERANCE_NORMS = ('none', 'mean', 'mean_var')



class Standardizer(NamedTuple):
  """Per-bin statistics: `(features - mean) / std` on valid frames."""
  mean: np.ndarray  # [bins]
  std: np.ndarray   # [bins]


class Moments(NamedTuple):
  """Running sums over valid frames, in float64, for fitting a Standardizer."""
  count: float
  total: np.ndarray    # [bins]
  squares: np.ndarray  # [bins]


def moments_init(num_bins: int) -> Moments:
  return Moments(0.0, np.zeros(num_bins), np.zeros(num_bins))


def moments_update(moments: Moments, features, frame_lengths=None) -> Moments:
  """Adds the valid frames of `[batch, frames, bins]` (or one `[frames, bins]`)."""
  features = np.asarray(features, np.float64)
  if features.ndim == 2:
    valid = features
  else:
    mask = np.asarray(frame_mask(frame_lengths, features.shape[1]))
    valid = features[mask]
  return Moments(moments.count + valid.shape[0], moments.total + valid.sum(0),
                 moments.squares + np.square(valid).sum(0))


def standardizer_from_moments(moments: Moments, *,
                              min_std: float = 1e-5) -> Standardizer:
  if moments.count == 0:
    raise ValueError('cannot fit a Standardizer on zero frames')
  mean = moments.total / moments.count
  var = np.maximum(moments.squares / moments.count - mean ** 2, 0.0)
  std = np.maximum(np.sqrt(var), min_std)
  return Standardizer(mean.astype(np.float32), std.astype(np.float32))


def fit_standardizer(features: Iterable, frame_lengths=None, *,
                     min_std: float = 1e-5) -> Standardizer:
  """Per-bin mean and std over all valid frames.

  Args:
    features: a padded batch `[batch, frames, bins]` with `frame_lengths`, or
      an iterable of unpadded `[frames_i, bins]` arrays (frame_lengths None).
    frame_lengths: `[batch]`, for a padded batch.
    min_std: floor on the std, so constant bins do not divide by zero.

  Returns:
    The Standardizer (float32 `[bins]` mean and std).
  """
  if frame_lengths is not None:
    features = np.asarray(features)
    moments = moments_update(moments_init(features.shape[-1]), features, frame_lengths)
  else:
    moments = None
    for item in features:
      item = np.asarray(item)
      moments = moments or moments_init(item.shape[-1])
      moments = moments_update(moments, item)
    if moments is None:
      raise ValueError('cannot fit a Standardizer on no utterances')
  return standardizer_from_moments(moments, min_std=min_std)


def standardize(features, frame_lengths, stats: Standardizer):
  """`(features - mean) / std` on valid frames; padding frames stay 0.

  Args:
    features: `[batch, frames, bins]`.
    frame_lengths: `[batch]`.
    stats: the Standardizer fitted on the training split.

  Returns:
    `[batch, frames, bins]` float32.
  """
  chex.assert_rank(features, 3)
  mask = frame_mask(frame_lengths, features.shape[1])[..., None]
  out = (features - jnp.asarray(stats.mean)) / jnp.asarray(stats.std)
  return jnp.where(mask, out, 0.0)


def normalize_utterances(features, frame_lengths, *, variance: bool = False,
                         min_std: float = 1e-3):
  """Each utterance's per-bin mean over its valid frames removed (and its std).

  A fixed channel (a microphone's response, a room's colouring) is a
  constant per bin in log-spectral features; removing each utterance's own
  mean removes it.

  Args:
    features: `[batch, frames, bins]`.
    frame_lengths: `[batch]`.
    variance: also divide by each utterance's per-bin std (floored at
      `min_std`).
    min_std: the floor.

  Returns:
    `[batch, frames, bins]`; padding frames stay 0.
  """
  chex.assert_rank(features, 3)
  mask = frame_mask(frame_lengths, features.shape[1])[..., None]
  count = jnp.maximum(jnp.sum(mask, axis=1, keepdims=True), 1)
  mean = jnp.sum(jnp.where(mask, features, 0.0), axis=1, keepdims=True) / count
  out = features - mean
  if variance:
    var = jnp.sum(jnp.where(mask, out * out, 0.0), axis=1, keepdims=True) / count
    out = out / jnp.maximum(jnp.sqrt(var), min_std)
  return jnp.where(mask, out, 0.0)
