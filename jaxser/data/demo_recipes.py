"""The demo corpus's recipes: which voices speak, through which channels.

- 'v1': the first demo corpus: ten espeak-ng voices of two accents (en-US,
  en) through one clean channel (white background noise only).
- 'v2': ten voices of five accents (en-US, en, en-GB-x-rp, en-029,
  en-GB-scotland) and a random recording channel per utterance
  (`TRAIN_CHANNEL`): band limits, an EQ tilt, mild reverberation and
  white or pink noise.
- 'ood': the out-of-domain check: six voices whose accents and variants
  neither v1 nor v2 uses (en-US-nyc, en-GB-x-gbclan, en-GB-x-gbcwmd; named
  variants) through channels outside v2's ranges (`OOD_CHANNEL`: telephone
  band, stronger tilt and reverberation, brown noise or babble at lower
  SNR). Train on v1 or v2, score on it (`jaxser.score`); never train on it.

A channel is drawn per utterance from its own stream (`ChannelSpec`, part of
the utterance's spec), so a recipe and a seed give the same bytes.
"""

import importlib.metadata
import json
from typing import NamedTuple

import numpy as np
from scipy import signal

from jaxser import audio

__all__ = ['OOD_CHANNEL', 'RECIPES', 'TRAIN_CHANNEL', 'ChannelRanges', 'ChannelSpec',
           'Recipe', 'apply_channel', 'draw_channel', 'params']


class ChannelRanges(NamedTuple):
  """Uniform ranges a channel is drawn from."""
  highpass_hz: tuple[float, float]
  lowpass_hz: tuple[float, float]  # at or above 7900: no low-pass
  tilt_db: tuple[float, float]  # gain at 4 kHz relative to 250 Hz, first-order
  reverb_probability: float
  rt60_s: tuple[float, float]
  noises: tuple[str, ...]  # 'white' | 'pink' | 'brown' | 'babble'
  snr_db: tuple[float, float]


class ChannelSpec(NamedTuple):
  """One utterance's channel."""
  highpass_hz: float
  lowpass_hz: float
  tilt_db: float
  rt60_s: float  # 0: dry
  noise: str
  snr_db: float
  seed: int

  def to_json(self) -> str:
    return json.dumps(self._asdict(), sort_keys=True)


class Recipe(NamedTuple):
  sessions: tuple  # (session, male voice, female voice)
  channel: ChannelRanges | None  # None: v1's clean channel


TRAIN_CHANNEL = ChannelRanges(
    highpass_hz=(40.0, 250.0), lowpass_hz=(4000.0, 8000.0), tilt_db=(-6.0, 6.0),
    reverb_probability=0.5, rt60_s=(0.1, 0.4), noises=('white', 'pink'),
    snr_db=(15.0, 40.0))
OOD_CHANNEL = ChannelRanges(
    highpass_hz=(300.0, 450.0), lowpass_hz=(2800.0, 3400.0), tilt_db=(-10.0, 10.0),
    reverb_probability=0.7, rt60_s=(0.5, 0.9), noises=('brown', 'babble'),
    snr_db=(5.0, 14.0))

RECIPES = {
    'v1': Recipe(sessions=(
        ('Ses01', 'en-us+m1', 'en-us+f1'),
        ('Ses02', 'en+m3', 'en+f2'),
        ('Ses03', 'en-us+m4', 'en-us+f3'),
        ('Ses04', 'en+m6', 'en+f4'),
        ('Ses05', 'en-us+m7', 'en-us+f5'),
    ), channel=None),
    'v2': Recipe(sessions=(
        ('Ses01', 'en-us+m2', 'en-us+f2'),
        ('Ses02', 'en-gb-x-rp+m5', 'en-gb-x-rp+f3'),
        ('Ses03', 'en-029+m8', 'en-029+f4'),
        ('Ses04', 'en-gb-scotland+m3', 'en-gb-scotland+f5'),
        ('Ses05', 'en+m6', 'en+f1'),
    ), channel=TRAIN_CHANNEL),
    'ood': Recipe(sessions=(
        ('Ood01', 'en-us-nyc+john', 'en-us-nyc+linda'),
        ('Ood02', 'en-gb-x-gbclan+max', 'en-gb-x-gbclan+belinda'),
        ('Ood03', 'en-gb-x-gbcwmd+Andy', 'en-gb-x-gbcwmd+Annie'),
    ), channel=OOD_CHANNEL),
}


def params(recipe: str) -> dict:
  """What a recipe adds to the corpus' params.json (nothing for 'v1')."""
  if recipe == 'v1':
    return {}
  return {'recipe': recipe, 'channel': RECIPES[recipe].channel._asdict(),
          'scipy': importlib.metadata.version('scipy')}


def draw_channel(ranges: ChannelRanges, rng: np.random.Generator) -> ChannelSpec:
  """A channel from `ranges`."""
  reverb = rng.random() < ranges.reverb_probability
  return ChannelSpec(
      highpass_hz=float(rng.uniform(*ranges.highpass_hz)),
      lowpass_hz=float(rng.uniform(*ranges.lowpass_hz)),
      tilt_db=float(rng.uniform(*ranges.tilt_db)),
      rt60_s=float(rng.uniform(*ranges.rt60_s)) if reverb else 0.0,
      noise=str(ranges.noises[int(rng.integers(len(ranges.noises)))]),
      snr_db=float(rng.uniform(*ranges.snr_db)),
      seed=int(rng.integers(2**31 - 1)))


def apply_channel(speech: np.ndarray, channel: ChannelSpec, babble=None) -> np.ndarray:
  """`speech` (16 kHz float32) through `channel`.

  Order: room (reverberation), microphone and line (band limits, tilt), then
  the noise at `snr_db` relative to the result. `babble`: other speech to
  mix for the 'babble' noise (several utterances summed), else pink noise.
  """
  rng = np.random.default_rng(channel.seed)
  rate = audio.SAMPLE_RATE
  x = speech.astype(np.float64)
  if channel.rt60_s > 0:
    x = _reverberate(x, channel.rt60_s, rng)
  sos = [signal.butter(2, channel.highpass_hz, 'highpass', fs=rate, output='sos')]
  if channel.lowpass_hz < 7900:
    sos.append(signal.butter(4, channel.lowpass_hz, 'lowpass', fs=rate, output='sos'))
  x = signal.sosfilt(np.concatenate(sos), x)
  x = _tilt(x, channel.tilt_db)
  rms = np.sqrt(np.mean(np.square(x))) + 1e-12
  noise = _noise(channel.noise, len(x), rng, babble)
  noise *= rms * 10 ** (-channel.snr_db / 20) / (np.sqrt(np.mean(np.square(noise))) + 1e-12)
  x = x + noise
  peak = np.max(np.abs(x))
  if peak > 0.99:
    x *= 0.99 / peak
  return x.astype(np.float32)


def _reverberate(x: np.ndarray, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
  """Convolution with a synthetic room response: a direct path and an
  exponentially decaying noise tail (-60 dB at `rt60_s`)."""
  rate = audio.SAMPLE_RATE
  n = int(rt60_s * rate)
  t = np.arange(n) / rate
  tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)
  tail[:int(0.005 * rate)] = 0.0  # the first reflections arrive after 5 ms
  response = 0.3 * tail / np.sqrt(np.sum(tail ** 2))
  response[0] = 1.0
  wet = signal.fftconvolve(x, response)[:len(x)]
  return wet * np.sqrt(np.mean(x ** 2) / (np.mean(wet ** 2) + 1e-12))


def _tilt(x: np.ndarray, tilt_db: float) -> np.ndarray:
  """A first-order shelf: `tilt_db` more at 4 kHz than at 250 Hz."""
  spectrum = np.fft.rfft(x)
  freqs = np.fft.rfftfreq(len(x), 1 / audio.SAMPLE_RATE)
  octaves = np.log2(np.clip(freqs, 250.0, 4000.0) / 250.0) / 4.0  # 0 .. 1
  return np.fft.irfft(spectrum * 10 ** (tilt_db * (octaves - 0.5) / 20), len(x))


def _noise(kind: str, n: int, rng: np.random.Generator, babble) -> np.ndarray:
  if kind == 'babble' and babble is not None and len(babble):
    return np.resize(np.asarray(babble, np.float64), n)
  white = rng.standard_normal(n)
  if kind == 'white':
    return white
  spectrum = np.fft.rfft(white)
  freqs = np.maximum(np.fft.rfftfreq(n, 1 / audio.SAMPLE_RATE), 20.0)
  power = 1.0 if kind in ('pink', 'babble') else 2.0  # 1/f, or 1/f^2 (brown)
  return np.fft.irfft(spectrum / freqs ** (power / 2), n)
