"""Loads audio as the model expects it: 16 kHz mono float32, validated."""

import os

import numpy as np
import soundfile as sf
import soxr

from jaxser.errors import AudioError

__all__ = ['MIN_SAMPLE_RATE', 'SAMPLE_RATE', 'describe_low_rate',
           'describe_truncation', 'from_array', 'load', 'to_mono_rate',
           'wav_truncation']

SAMPLE_RATE = 16000  # Hz; every feature parameter assumes it.
# Lower rates hold no speech band worth the name (telephone speech is 8 kHz),
# and resampling them up would let a tiny file fill the memory: 4 KB at 1 Hz
# is 33 minutes at 16 kHz. With this floor a file grows at most 4-fold.
MIN_SAMPLE_RATE = 4000
_WAV_HEAD_BYTES = 1 << 16  # where a WAV's data chunk header is looked for


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
    AudioError: the file is missing, unreadable, recorded below
      `MIN_SAMPLE_RATE`, a WAV cut short
      (`wav_truncation`), holds no samples (also after resampling) or holds
      non-finite samples. The message names the file and the fault; the
      error's `kind` is the fault's name in `jaxser.data.records.FAULTS`.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise AudioError(f'{path}: file does not exist', 'missing file')
  if not os.path.isfile(path):
    raise AudioError(f'{path}: not a regular file', 'missing file')
  try:
    rate = sf.info(path).samplerate
    if rate < MIN_SAMPLE_RATE:  # before reading: the check bounds memory
      raise AudioError(f'{path}: unreadable audio ({describe_low_rate(rate)})',
                       'unreadable audio')
    data, rate = sf.read(path, dtype='float32', always_2d=True)
  except AudioError:
    raise
  except Exception as e:  # libsndfile raises several types; keep its words.
    raise AudioError(f'{path}: unreadable audio ({e})', 'unreadable audio') from e
  try:
    cut = wav_truncation(path)
  except OSError as e:  # gone or locked since it was read
    raise AudioError(f'{path}: unreadable audio ({e})', 'unreadable audio') from e
  if cut:
    raise AudioError(f'{path}: truncated audio ({describe_truncation(*cut)})',
                     'truncated audio')
  if data.shape[0] == 0:
    raise AudioError(f'{path}: empty audio (0 samples)', 'empty audio')
  if not np.all(np.isfinite(data)):
    bad = int(np.sum(~np.isfinite(data)))
    raise AudioError(f'{path}: {bad} non-finite (NaN or Inf) samples',
                     'non-finite samples')
  samples = to_mono_rate(data, rate, sample_rate)
  if samples.size == 0:  # a few samples at a very high rate resample to none
    raise AudioError(f'{path}: empty audio ({data.shape[0]} samples at {rate} Hz '
                     f'give none at {sample_rate} Hz)', 'empty audio')
  return samples


def wav_truncation(path) -> tuple[int, int] | None:
  """`(declared, present)` samples of a WAV file whose body is cut short.

  libsndfile decodes a WAV whose data chunk claims more bytes than the file
  holds without a word, returning only the samples present (a copy or a
  download that stopped early), so the header is compared with the file's
  size here. Streaming writers' placeholder sizes (0, 2**32 - 1) mean
  "unknown", not truncated.

  Args:
    path: any file; only RIFF/WAVE files are examined.

  Returns:
    The samples (per channel) the header declares and those the file holds,
    or None: not a WAV file, no data chunk in the first 64 KiB, or whole.
  """
  with open(path, 'rb') as f:
    head = f.read(_WAV_HEAD_BYTES)
  chunk = _wav_data_chunk(head)
  if chunk is None:
    return None
  block_align, offset, declared = chunk
  if declared in (0, 0xFFFFFFFF):
    return None
  present = max(os.path.getsize(path) - offset, 0)
  if present // block_align >= declared // block_align:
    return None
  return declared // block_align, present // block_align


def describe_truncation(declared: int, present: int) -> str:
  """The words for a `wav_truncation` result (one phrase for every report)."""
  return f'the header declares {declared} samples, the file holds {present}'


def describe_low_rate(rate: int) -> str:
  """Why a rate below `MIN_SAMPLE_RATE` is refused (one phrase for all reports)."""
  return (f'sample rate {rate} Hz, below the {MIN_SAMPLE_RATE} Hz of any '
          'speech recording')


def _wav_data_chunk(head: bytes) -> tuple[int, int, int] | None:
  """`(block_align, data offset, declared data bytes)` of a WAV header."""
  if head[:4] != b'RIFF' or head[8:12] != b'WAVE':
    return None
  pos, block_align = 12, 0
  while pos + 8 <= len(head):
    name = head[pos:pos + 4]
    size = int.from_bytes(head[pos + 4:pos + 8], 'little')
    if name == b'fmt ' and pos + 22 <= len(head):
      block_align = int.from_bytes(head[pos + 20:pos + 22], 'little')
    elif name == b'data':
      return (block_align, pos + 8, size) if block_align > 0 else None
    pos += 8 + size + size % 2  # chunks are padded to an even size
  return None


def to_mono_rate(data: np.ndarray, rate: int,
                 sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """Mixes `[samples, channels]` (or `[samples]`) down and resamples it."""
  data = np.asarray(data, np.float32)
  if data.ndim == 2:
    data = data.mean(axis=1)
  if rate != sample_rate:
    data = soxr.resample(data, rate, sample_rate, quality='HQ')
  return np.ascontiguousarray(data, dtype=np.float32)



def from_array(wave, rate: int, where: str = 'the waveform') -> np.ndarray:
  """Samples given in memory, checked and made 16 kHz mono float32 as `load` does.

  Args:
    wave: `[samples]` or `[samples, channels]`.
    rate: its sampling rate in Hz.
    where: how messages name it ('waveform 3').

  Raises:
    AudioError: no samples, non-finite samples or a rate below
      `MIN_SAMPLE_RATE`, naming `where`.
    ValueError: a rate that is not a positive int.
  """
  if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate < 1:
    raise ValueError(f'sampling_rate={rate!r}: must be a positive int (Hz)')
  if rate < MIN_SAMPLE_RATE:
    raise AudioError(f'{where}: {describe_low_rate(rate)}', 'unreadable audio')
  wave = np.asarray(wave, np.float32)
  if wave.ndim not in (1, 2) or wave.shape[0] == 0:
    raise AudioError(f'{where}: expected [samples] or [samples, channels] with '
                     f'samples, got shape {wave.shape}', 'empty audio')
  if not np.all(np.isfinite(wave)):
    raise AudioError(f'{where}: {int(np.sum(~np.isfinite(wave)))} non-finite '
                     '(NaN or Inf) samples', 'non-finite samples')
  return to_mono_rate(wave, rate)
