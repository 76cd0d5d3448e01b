"""Spectrogram features as pure, batched, jit-compiled JAX functions.

The authors' librosa recipe (docs/method.md, Features): `S = |stft(y)|**2`
(Hamming window, centred frames), log-Mel `power_to_db(mel @ S)`, log-STFT
`power_to_db(S + 1e-8)`, for a padded batch `[batch, samples]` with
per-utterance sample counts: padding never changes a valid value, and each
utterance's 80 dB floor is relative to its own valid frames. Longer
utterances keep their middle `max_frames` frames (`start = (T - max_frames)
// 2`), cropped before the dB floor: the features of the 14 s the model sees.
Every parameter lives in `FeatureParams` (the paper's values are its
defaults); the functions take it whole. Standardisation: `jaxser.standardize`.
"""

import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import math
from typing import Sequence

import chex
import jax
import jax.numpy as jnp
import librosa
import numpy as np

from jaxser import audio
from jaxser import ops

__all__ = ['FeatureParams', 'crop_margin', 'crop_waveform', 'cropped_frames', 'extract',
           'extract_numpy', 'frame_mask', 'log_mel', 'log_stft',
           'mel_filterbank', 'non_finite_reason', 'num_frames',
           'power_spectrogram', 'power_to_db']


@dataclasses.dataclass(frozen=True)
class FeatureParams:
  """Everything that determines a feature array; the paper's values default."""
  kind: str = 'mel'            # 'mel' (log-Mel) or 'stft' (log power STFT).
  sample_rate: int = audio.SAMPLE_RATE  # Hz of the input waveforms.
  n_fft: int = 1024            # FFT size (64 ms).
  hop_length: int = 160        # Frame shift in samples (10 ms).
  win_length: int = 640        # Hamming window in samples (40 ms).
  n_mels: int = 128            # Mel bands (kind='mel').
  amin: float = 1e-10          # power_to_db floor before the log.
  top_db: float = 80.0         # Per-utterance dynamic range in dB.
  stft_offset: float = 1e-8    # Added to the power before the log (kind='stft').
  max_frames: int = 1400       # Longer utterances keep their middle frames.
  pad_mode: str = 'constant'   # Centred frames' edges: 'constant' (zeros, librosa
                               # >= 0.10) or 'reflect' (librosa 0.6, the authors').

  def __post_init__(self):
    def check(ok, field, why):
      if not ok:
        raise ValueError(f'{field}={getattr(self, field)!r}: {why}')
    check(self.kind in ('mel', 'stft'), 'kind', "must be 'mel' or 'stft'")
    check(self.pad_mode in ('constant', 'reflect'), 'pad_mode',
          "must be 'constant' or 'reflect'")
    for field in ('sample_rate', 'n_fft', 'hop_length', 'n_mels', 'max_frames'):
      check(getattr(self, field) > 0, field, 'must be > 0')
    check(0 < self.win_length <= self.n_fft, 'win_length',
          f'must be in (0, n_fft={self.n_fft}]')
    check(math.isfinite(self.top_db) and self.top_db > 0, 'top_db',
          'the dynamic range must be a finite number of dB > 0')
    check(self.amin > 0, 'amin', 'must be > 0 (the floor before the log)')
    check(self.stft_offset >= 0, 'stft_offset', 'must be >= 0')

  @property
  def num_bins(self) -> int:
    return self.n_mels if self.kind == 'mel' else self.n_fft // 2 + 1

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def fingerprint(self) -> str:
    """A stable short hash of all fields (for caches and checkpoints)."""
    text = json.dumps(self.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def num_frames(num_samples, hop_length: int):
  """Frames librosa's centred STFT gives for `num_samples` samples."""
  return 1 + num_samples // hop_length


def cropped_frames(num_samples, params: 'FeatureParams'):
  """Frames kept after the middle crop: `min(1 + n // hop, max_frames)`."""
  return np.minimum(num_frames(np.asarray(num_samples), params.hop_length),
                    params.max_frames)


def crop_margin(params: 'FeatureParams') -> int:
  """Whole frames covering half a window: what `crop_waveform` keeps each side."""
  return -(-(params.n_fft // 2) // params.hop_length)


def crop_waveform(waveform: np.ndarray, params: 'FeatureParams') -> np.ndarray:
  """The part of a 1-D waveform whose features are those of the whole.

  Features keep the middle `max_frames` frames of a long utterance; this
  keeps the samples those frames read, plus `margin` whole frames on each
  side (at least `n_fft // 2` samples), cut at a frame boundary so that the
  middle crop of the cut waveform is the same frames as the whole's. Memory
  is then bounded by `max_frames` whatever the file's length: a 30-minute
  file costs what 14 s do. A waveform too short to be cropped by more than
  the margins is returned as it is; a longer one as a copy (not a view that
  would keep the whole array alive).

  Returns:
    `[samples']` with `extract(cut) == extract(waveform)` exactly.
  """
  hop, kept, margin = params.hop_length, params.max_frames, crop_margin(params)
  total = int(num_frames(len(waveform), hop))
  start = (total - kept) // 2  # the first kept frame (as `_spectrogram`)
  if start < margin:
    return waveform
  first = (start - margin) * hop
  # 1 + samples // hop = kept + 2 * margin frames: the cut's own middle crop
  # starts `margin` frames in, at the whole's frame `start`.
  return np.array(waveform[first:first + (kept + 2 * margin - 1) * hop])


def non_finite_reason(waveform: np.ndarray, params: 'FeatureParams') -> str:
  """Why the features of a finite waveform came out NaN or Inf, for messages.

  A frame's power is at most `(peak * win_length) ** 2`; past float32's
  largest value it overflows (float audio far outside [-1, 1]).
  """
  peak = float(np.max(np.abs(waveform)))
  if (peak * params.win_length) ** 2 > float(np.finfo(np.float32).max):
    return (f"the audio's power overflows float32 (peak amplitude {peak:.3g}; "
            'audio is expected within [-1, 1])')
  return f'the features are NaN or Inf (peak amplitude {peak:.3g})'


def frame_mask(frame_lengths, max_len: int):
  """`[batch, max_len]` bool, True on valid frames."""
  return jnp.arange(max_len)[None, :] < jnp.asarray(frame_lengths)[:, None]


# --------------------------------------------------------------------------
# Power spectrogram.
#
# On the CPU a few utterances at a time inside one `lax.map`: the frames and
# spectra of a chunk (a few MiB) stay in cache, where the whole batch's
# hundreds of MiB, mapped afresh on every call, cost page faults worth the
# FFT itself (docs/performance.md). GPUs and TPUs take the batch at once.

_CHUNK_FRAMES = 2000  # Frames per chunk: 4 utterances of 4 s, 1 of 14 s.


def _window(win_length: int) -> np.ndarray:
  return librosa.filters.get_window('hamming', win_length, fftbins=True).astype(np.float32)


def _segments(waveforms, lengths, starts, num_out: int, *, n_fft: int,
              hop_length: int, pad_mode: str = 'constant'):
  """The samples each utterance's kept frames cover: `[batch, span]`.

  Zeroes everything beyond each length (padding never leaks in), pads
  `n_fft // 2` samples in front (librosa's centred frames: zeros, or the
  utterance reflected at its own ends for `pad_mode='reflect'`) and keeps,
  from each utterance's first kept frame (the crop), the `span` samples of
  its `num_out` frames.
  """
  batch, samples = waveforms.shape
  span = (num_out - 1) * hop_length + n_fft
  # Room for the latest start: that of an utterance filling the whole width.
  latest = max(int(num_frames(samples, hop_length)) - num_out, 0) // 2
  right = max(latest * hop_length + span - n_fft // 2 - samples, 0)
  if pad_mode == 'reflect':
    padded = _reflect_padded(waveforms, lengths, n_fft // 2, samples + right)
  else:
    signal = jnp.where(jnp.arange(samples)[None] < lengths[:, None], waveforms, 0.0)
    padded = jnp.pad(signal, ((0, 0), (n_fft // 2, right)))
  if latest == 0:  # No utterance is long enough to be cropped.
    return padded[:, :span]
  take = lambda row, s: jax.lax.dynamic_slice(row, (s * hop_length,), (span,))
  return jax.vmap(take)(padded, starts)


def _reflect_padded(waveforms, lengths, left: int, width: int):
  """Each row reflected at its own ends, as `np.pad(x, mode='reflect')`:
  `[batch, left + width]`, sample `p` being the row's sample `p - left`.

  Reflection repeats with period `2 * (n - 1)` for a row of `n` samples
  (numpy's rule when the padding is longer than the row); a row of one
  sample repeats it.
  """
  n = jnp.asarray(lengths, jnp.int32)[:, None]
  period = jnp.maximum(2 * (n - 1), 1)
  q = jnp.mod(jnp.arange(left + width)[None] - left, period)
  q = jnp.where(q >= n, period - q, q)
  return jnp.take_along_axis(waveforms, q, axis=1)


def _chunk_power(segments, num_out: int, *, n_fft: int, hop_length: int,
                 win_length: int):
  """|rfft|^2 of the windowed frames of `_segments` rows.

  Frame t is `segment[t * hop : t * hop + n_fft]` times the window centred
  in `n_fft` samples with zeros around, as librosa pads a short window. The
  frames are contiguous slices (a windowed gather): indexing sample by
  sample, XLA gathers them transposed and copies them back.

  Returns:
    `[chunk, num_out, n_fft // 2 + 1]` float32.
  """
  lpad = (n_fft - win_length) // 2
  window = np.zeros(n_fft, np.float32)
  window[lpad:lpad + win_length] = _window(win_length)
  frame = lambda row, start: jax.lax.dynamic_slice(row, (start,), (n_fft,))
  frames = jax.vmap(jax.vmap(frame, (None, 0)), (0, None))(
      segments, np.arange(num_out) * hop_length)
  spectrum = jnp.fft.rfft(frames * window)
  return jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2


def _chunk_size(waveforms, num_out: int) -> int:
  """Utterances per iteration of `_spectrogram`'s loop.

  About `_CHUNK_FRAMES` frames on the CPU; the whole batch elsewhere, and
  when explicit sharding splits the batch over devices (`lax.map` cannot
  loop over a split axis).
  """
  batch = waveforms.shape[0]
  spec = ()
  if hasattr(jax, 'typeof'):  # JAX with explicit sharding
    spec = getattr(jax.typeof(waveforms).sharding, 'spec', ())
  if jax.default_backend() != 'cpu' or (len(spec) > 0 and spec[0] is not None):
    return batch
  return max(1, min(batch, _CHUNK_FRAMES // num_out))


def _spectrogram(waveforms, lengths, per_chunk, params: 'FeatureParams'):
  """`per_chunk(power, frame_lengths)` over chunks of a padded batch.

  Computes the frame counts, the crop starts and the samples the kept
  frames cover, for the whole batch (gathering frames from a plain array
  costs a fraction of gathering them from one that XLA fuses with the
  masking, padding and crop); then the power spectrogram of a few
  utterances at a time (`_chunk_size`), handed to `per_chunk`, whose
  outputs `[chunk, frames, ...]` are stacked back into the batch.

  Returns:
    `(per_chunk's output for the batch, frame_lengths [batch] int32)`.
  """
  waveforms = jnp.asarray(waveforms, jnp.float32)
  lengths = jnp.asarray(lengths, jnp.int32)
  chex.assert_rank(waveforms, 2)
  chex.assert_shape(lengths, (waveforms.shape[0],))
  batch, samples = waveforms.shape
  n_fft, hop_length, max_frames = params.n_fft, params.hop_length, params.max_frames
  num_out = min(num_frames(samples, hop_length), max_frames)
  total = num_frames(lengths, hop_length)
  starts = jnp.maximum(total - max_frames, 0) // 2
  frame_lengths = jnp.minimum(total, max_frames).astype(jnp.int32)

  segments = _segments(waveforms, lengths, starts, num_out, n_fft=n_fft,
                       hop_length=hop_length, pad_mode=params.pad_mode)

  def chunk_fn(args):
    segment, frame_length = args
    power = _chunk_power(segment, num_out, n_fft=n_fft, hop_length=hop_length,
                         win_length=params.win_length)
    return per_chunk(power, frame_length)

  size = _chunk_size(waveforms, num_out)
  rows = -(-batch // size) * size  # Whole chunks; extra rows are empty.
  pad = lambda x: jnp.pad(x, [(0, rows - batch)] + [(0, 0)] * (x.ndim - 1))
  chunked = [pad(x).reshape(rows // size, size, *x.shape[1:])
             for x in (segments, frame_lengths)]
  out = jax.lax.map(chunk_fn, tuple(chunked))
  out = jax.tree.map(lambda x: x.reshape(rows, *x.shape[2:])[:batch], out)
  return out, frame_lengths


def power_spectrogram(waveforms, lengths, params: 'FeatureParams' = None):
  """|STFT|^2 of a padded batch, cropped to the middle `max_frames` frames.

  Args:
    waveforms: `[batch, samples]` float32, zero beyond each length.
    lengths: `[batch]` int sample counts.
    params: the STFT (Hamming window, centred frames) and the crop; default
      `FeatureParams()`.

  Returns:
    power: `[batch, frames, n_fft // 2 + 1]` float32, zero on padding frames.
    frame_lengths: `[batch]` int32 valid frames, `min(1 + n // hop, max_frames)`.
  """
  def masked(power, frame_lengths):
    return jnp.where(frame_mask(frame_lengths, power.shape[1])[..., None], power, 0.0)
  return _spectrogram(waveforms, lengths, masked, params or FeatureParams())


def power_to_db(power, frame_lengths, *, amin: float, top_db: float):
  """`librosa.power_to_db(power, ref=1.0)` per utterance of a padded batch.

  The `top_db` floor is relative to each utterance's maximum over its valid
  frames; padding frames come out as 0.
  """
  db = 10.0 * jnp.log10(jnp.maximum(power, amin))
  mask = frame_mask(frame_lengths, power.shape[1])[..., None]
  peak = jnp.max(jnp.where(mask, db, -jnp.inf), axis=(1, 2), keepdims=True)
  db = jnp.maximum(db, peak - top_db)
  return jnp.where(mask, db, 0.0)


def mel_filterbank(params: 'FeatureParams') -> np.ndarray:
  """librosa's Slaney Mel filterbank, transposed: `[n_fft // 2 + 1, n_mels]`."""
  return librosa.filters.mel(sr=params.sample_rate, n_fft=params.n_fft,
                             n_mels=params.n_mels).T.astype(np.float32)


# --------------------------------------------------------------------------
# The two feature kinds.


@functools.partial(jax.jit, static_argnames='params')
def extract(waveforms, lengths, params: FeatureParams = FeatureParams()):
  """Log-Mel or log power STFT of a padded batch, as `params.kind` says.

  log-Mel is `power_to_db(mel_filterbank @ S)`, log-STFT `power_to_db(S +
  stft_offset)` (docs/method.md, Features).

  Args:
    waveforms: `[batch, samples]` float32 at `params.sample_rate`, zero padded.
    lengths: `[batch]` valid sample counts.
    params: every parameter of the features (a static argument: one compiled
      program per distinct value).

  Returns:
    features: `[batch, frames, params.num_bins]` float32 dB, 0 on padding frames.
    frame_lengths: `[batch]` int32, `min(1 + n // hop_length, max_frames)`.
  """
  if params.kind == 'mel':
    bank = mel_filterbank(params)
    spectrum = lambda power: ops.apply_filterbank(power, bank)
  else:
    spectrum = lambda power: power + params.stft_offset
  def to_db(power, frame_lengths):
    return power_to_db(spectrum(power), frame_lengths, amin=params.amin,
                       top_db=params.top_db)
  return _spectrogram(waveforms, lengths, to_db, params)


def log_mel(waveforms, lengths, params: FeatureParams | None = None, **fields):
  """`extract` of kind 'mel': `params` (default the paper's) with `fields` set,
  e.g. `log_mel(w, n, n_mels=64)`."""
  params = dataclasses.replace(params or FeatureParams(), kind='mel', **fields)
  return extract(waveforms, lengths, params)


def log_stft(waveforms, lengths, params: FeatureParams | None = None, **fields):
  """`extract` of kind 'stft' (`n_fft // 2 + 1` = 513 bins by default)."""
  params = dataclasses.replace(params or FeatureParams(), kind='stft', **fields)
  return extract(waveforms, lengths, params)


def extract_numpy(waveforms: Sequence[np.ndarray],
                  params: FeatureParams = FeatureParams(), *,
                  batch_size: int = 32, pad_multiple: int = audio.SAMPLE_RATE,
                  workers: int = 2) -> list[np.ndarray]:
  """Features of a list of 1-D waveforms, as a list of `[frames_i, bins]`.

  Each waveform is first cut to the samples its kept frames read
  (`crop_waveform`): memory bounded by `max_frames` whatever the lengths.
  Utterances are sorted by length and batched; each batch is padded to a
  multiple of `pad_multiple` samples so the number of compiled programs stays
  small (one per padded length). `workers` threads run batches side by side:
  XLA:CPU computes a program's FFT on one thread, so two batches in flight
  keep two cores busy (docs/performance.md). Results keep the input order.
  """
  waveforms = [np.asarray(w, np.float32) for w in waveforms]
  for i, w in enumerate(waveforms):
    if w.ndim != 1 or not w.size:
      raise ValueError(f'waveforms[{i}] has shape {w.shape}: expected 1-D, non-empty samples')
  # Only the samples of the kept frames: memory bounded by max_frames.
  waveforms = [crop_waveform(w, params) for w in waveforms]
  order = np.argsort([len(w) for w in waveforms], kind='stable')
  out = [None] * len(waveforms)

  def run(chunk):
    lengths = np.array([len(waveforms[j]) for j in chunk], np.int32)
    width = max(pad_multiple, -(-int(lengths.max()) // pad_multiple) * pad_multiple)
    batch = np.zeros((batch_size, width), np.float32)  # fixed batch: one shape
    for row, j in enumerate(chunk):
      batch[row, :lengths[row]] = waveforms[j]
    full_lengths = np.zeros(batch_size, np.int32)
    full_lengths[:len(chunk)] = lengths
    feats, frame_lengths = jax.device_get(extract(batch, full_lengths, params))
    for row, j in enumerate(chunk):
      out[j] = np.array(feats[row, :frame_lengths[row]])

  chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
  with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
    for _ in pool.map(run, chunks):  # Re-raises a batch's error.
      pass
  return out
