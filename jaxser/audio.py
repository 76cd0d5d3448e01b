"""Loads audio as the model expects it: 16 kHz mono float32, validated."""

import os

import numpy as np
import soundfile as sf
import soxr

from jaxser.errors import AudioError

SAMPLE_RATE = 16000  # Hz; every feature parameter assumes it.


def load(path, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """Reads one audio file as mono float32 at `sample_rate`.

  Stereo (or more channels) is mixed down by averaging; other sample rates are
  resampled with soxr (high quality).

  Args:
    path: the file (wav, flac, ogg: whatever libsndfile reads).
    sample_rate: the rate to return.

  Returns:
    `[samples]` float32.

  Raises:
    AudioError: the file is missing, unreadable, holds no samples (also after
      resampling) or holds non-finite samples. The message names the file
      and the fault.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise AudioError(f'{path}: file does not exist')
  if not os.path.isfile(path):
    raise AudioError(f'{path}: not a regular file')
  try:
    data, rate = sf.read(path, dtype='float32', always_2d=True)
  except Exception as e:  # libsndfile raises several types; keep its words.
    raise AudioError(f'{path}: unreadable audio ({e})') from e
  if data.shape[0] == 0:
    raise AudioError(f'{path}: empty audio (0 samples)')
  if not np.all(np.isfinite(data)):
    bad = int(np.sum(~np.isfinite(data)))
    raise AudioError(f'{path}: {bad} non-finite (NaN or Inf) samples')
  samples = to_mono_rate(data, rate, sample_rate)
  if samples.size == 0:  # a few samples at a very high rate resample to none
    raise AudioError(f'{path}: empty audio ({data.shape[0]} samples at {rate} Hz '
                     f'give none at {sample_rate} Hz)')
  return samples


def to_mono_rate(data: np.ndarray, rate: int,
                 sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """Mixes `[samples, channels]` (or `[samples]`) down and resamples it."""
  data = np.asarray(data, np.float32)
  if data.ndim == 2:
    data = data.mean(axis=1)
  if rate != sample_rate:
    data = soxr.resample(data, rate, sample_rate, quality='HQ')
  return np.ascontiguousarray(data, dtype=np.float32)


def duration_seconds(num_samples: int, sample_rate: int = SAMPLE_RATE) -> float:
  return num_samples / sample_rate
