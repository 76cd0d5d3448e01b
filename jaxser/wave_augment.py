"""Augmentation of a batch of waveforms: noise, speed and reverberation.

Pure JAX functions of an explicit PRNG key on a padded batch `[batch,
samples]` with `lengths [batch]` (valid samples), as Kaldi and SpeechBrain
recipes augment before the features; each leaves the padding at 0:

- `add_noise`: noise at a random SNR per utterance, relative to the
  utterance's own power over its valid samples: white, pink (1/f), or
  babble (the sum of three other utterances of the batch).
- `speed_perturb`: speed (tempo and pitch together) by a factor drawn from
  `factors` per utterance (0.9, 1.0, 1.1 as in the recipes), by linear
  interpolation; the valid length becomes `floor((length - 1) / factor) + 1`,
  cut to the batch's width.
- `reverberate`: convolution with a synthetic room response (a direct path
  and an exponentially decaying noise tail, RT60 drawn per utterance), the
  result cut to the utterance's length and brought back to its power.

`apply` draws all three for a batch as `WaveAugment` says (the training
step's `config.wave_augment`, with the features then computed inside the
step from cached waveforms: `jaxser.steps`).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxser import audio
from jaxser.features import frame_mask

__all__ = ['NOISES', 'WaveAugment', 'add_noise', 'apply', 'reverberate', 'speed_perturb']

NOISES = ('white', 'pink', 'babble')


def _power(x, valid):
  return jnp.sum(jnp.where(valid, x * x, 0.0), -1) / jnp.maximum(jnp.sum(valid, -1), 1)


def _pink(key, shape):
  """1/f noise: white noise shaped in the frequency domain."""
  spectrum = jnp.fft.rfft(jax.random.normal(key, shape), axis=-1)
  freqs = jnp.maximum(jnp.fft.rfftfreq(shape[-1], 1 / audio.SAMPLE_RATE), 20.0)
  return jnp.fft.irfft(spectrum / jnp.sqrt(freqs), shape[-1], axis=-1)


def add_noise(key, waveforms, lengths, *, snr_db=(5.0, 20.0), kinds=NOISES,
              probability: float = 1.0):
  """Each utterance (with `probability`) plus noise of a kind from `kinds` at
  an SNR in `snr_db`.

  Returns:
    `[batch, samples]`; padding stays 0.
  """
  batch, samples = waveforms.shape
  kind_key, snr_key, white_key, pink_key, use_key = jax.random.split(key, 5)
  valid = frame_mask(lengths, samples)
  kinds = tuple(kinds)
  choice = jax.random.randint(kind_key, (batch,), 0, len(kinds))
  candidates = []
  for kind in kinds:
    if kind == 'white':
      candidates.append(jax.random.normal(white_key, waveforms.shape))
    elif kind == 'pink':
      candidates.append(_pink(pink_key, waveforms.shape))
    elif kind == 'babble':
      candidates.append(sum(jnp.roll(waveforms, k, axis=0) for k in (1, 2, 3)))
    else:
      raise ValueError(f'noise kind {kind!r}: must be one of {", ".join(NOISES)}')
  noise = jnp.stack(candidates)[choice, jnp.arange(batch)]
  noise = jnp.where(valid, noise, 0.0)
  snr = jax.random.uniform(snr_key, (batch,), minval=snr_db[0], maxval=snr_db[1])
  target = _power(waveforms, valid) / 10 ** (snr / 10)
  scale = jnp.sqrt(target / jnp.maximum(_power(noise, valid), 1e-20))
  scale = jnp.where(jax.random.uniform(use_key, (batch,)) < probability, scale, 0.0)
  return jnp.where(valid, waveforms + scale[:, None] * noise, 0.0)


def speed_perturb(key, waveforms, lengths, *, factors=(0.9, 1.0, 1.1)):
  """Each utterance at a speed from `factors` (> 1 faster and shorter).

  Returns:
    `(waveforms [batch, samples], lengths [batch])`; padding stays 0.
  """
  batch, samples = waveforms.shape
  factor = jnp.asarray(factors, jnp.float32)[
      jax.random.randint(key, (batch,), 0, len(factors))]
  lengths = jnp.asarray(lengths, jnp.int32)
  new_lengths = jnp.minimum(
      jnp.floor((lengths - 1) / factor).astype(jnp.int32) + 1, samples)
  position = jnp.arange(samples)[None, :] * factor[:, None]  # in input samples
  low = jnp.clip(jnp.floor(position).astype(jnp.int32), 0, samples - 1)
  high = jnp.clip(low + 1, 0, samples - 1)
  frac = position - low
  rows = jnp.arange(batch)[:, None]
  out = (1 - frac) * waveforms[rows, low] + frac * waveforms[rows, high]
  high_valid = high < lengths[:, None]  # the last valid sample has no right neighbour
  out = jnp.where(high_valid, out, waveforms[rows, low])
  return jnp.where(frame_mask(new_lengths, samples), out, 0.0), new_lengths


def reverberate(key, waveforms, lengths, *, rt60_s=(0.2, 0.6), probability: float = 1.0,
                max_response_s: float = 0.6):
  """Each utterance (with `probability`) in a synthetic room of RT60 in `rt60_s`.

  Returns:
    `[batch, samples]` at each utterance's own power; padding stays 0.
  """
  batch, samples = waveforms.shape
  rt_key, tail_key, use_key = jax.random.split(key, 3)
  taps = int(max_response_s * audio.SAMPLE_RATE)
  rt60 = jax.random.uniform(rt_key, (batch, 1), minval=rt60_s[0], maxval=rt60_s[1])
  t = jnp.arange(taps)[None, :] / audio.SAMPLE_RATE
  tail = jax.random.normal(tail_key, (batch, taps)) * jnp.exp(-6.9 * t / rt60)
  tail = jnp.where(t >= 0.005, tail, 0.0)  # the first reflections after 5 ms
  tail = 0.3 * tail / jnp.sqrt(jnp.sum(tail * tail, -1, keepdims=True))
  response = tail.at[:, 0].set(1.0)
  size = samples + taps
  wet = jnp.fft.irfft(jnp.fft.rfft(waveforms, size, axis=-1)
                      * jnp.fft.rfft(response, size, axis=-1), size, axis=-1)[:, :samples]
  valid = frame_mask(lengths, samples)
  wet = wet * jnp.sqrt(_power(waveforms, valid) / jnp.maximum(_power(wet, valid), 1e-20))[:, None]
  use = jax.random.uniform(use_key, (batch, 1)) < probability
  return jnp.where(valid, jnp.where(use, wet, waveforms), 0.0)


class WaveAugment(NamedTuple):
  """What `apply` draws for each utterance of a batch; all off by default."""
  noise_probability: float = 0.0  # Utterances that get noise.
  noise_snr_low_db: float = 5.0  # Its SNR, U[low, high] dB.
  noise_snr_high_db: float = 20.0
  noise_kinds: str = ','.join(NOISES)  # Comma-separated, drawn uniformly.
  speed_factors: str = ''  # e.g. '0.9,1.0,1.1'; '' keeps the speed.
  reverb_probability: float = 0.0  # Utterances put in a synthetic room.
  reverb_rt60_low_s: float = 0.2  # Its RT60, U[low, high] seconds.
  reverb_rt60_high_s: float = 0.6

  @property
  def enabled(self) -> bool:
    return bool(self.noise_probability or self.reverb_probability or self.factors)

  @property
  def factors(self) -> tuple[float, ...]:
    return tuple(float(f) for f in self.speed_factors.split(',') if f.strip())

  def check(self) -> None:
    """Raises ValueError naming the first field out of range."""
    def require(ok, field, why):
      if not ok:
        raise ValueError(f'wave_augment.{field}={getattr(self, field)!r}: {why}')
    for field in ('noise_probability', 'reverb_probability'):
      require(0 <= getattr(self, field) <= 1, field, 'must be in [0, 1]')
    require(self.noise_snr_low_db <= self.noise_snr_high_db, 'noise_snr_low_db',
            f'must be <= noise_snr_high_db={self.noise_snr_high_db}')
    require(0 < self.reverb_rt60_low_s <= self.reverb_rt60_high_s, 'reverb_rt60_low_s',
            f'must be in (0, reverb_rt60_high_s={self.reverb_rt60_high_s}]')
    kinds = [k.strip() for k in self.noise_kinds.split(',')]
    require(kinds and set(kinds) <= set(NOISES), 'noise_kinds',
            f'must be a comma-separated subset of {",".join(NOISES)}')
    try:
      factors = self.factors
    except ValueError:
      factors = (0.0,)
    require(all(0.5 <= f <= 2.0 for f in factors), 'speed_factors',
            "must be comma-separated factors in [0.5, 2], e.g. '0.9,1.0,1.1'")


def apply(key, waveforms, lengths, settings: WaveAugment):
  """Speed, then reverberation, then noise, as `settings` says.

  Returns:
    `(waveforms [batch, samples], lengths [batch])`; padding stays 0. Off,
    the inputs unchanged.
  """
  speed_key, reverb_key, noise_key = jax.random.split(key, 3)
  lengths = jnp.asarray(lengths, jnp.int32)
  if settings.factors:
    waveforms, lengths = speed_perturb(speed_key, waveforms, lengths,
                                       factors=settings.factors)
  if settings.reverb_probability:
    waveforms = reverberate(reverb_key, waveforms, lengths,
                            rt60_s=(settings.reverb_rt60_low_s, settings.reverb_rt60_high_s),
                            probability=settings.reverb_probability)
  if settings.noise_probability:
    waveforms = add_noise(noise_key, waveforms, lengths,
                          snr_db=(settings.noise_snr_low_db, settings.noise_snr_high_db),
                          kinds=[k.strip() for k in settings.noise_kinds.split(',')],
                          probability=settings.noise_probability)
  return waveforms, lengths
