"""Spectrogram features as pure, batched, jit-compiled JAX functions.

The recipe is the authors' librosa one (SPEC.md section 1):

  S = |librosa.stft(y, n_fft=1024, hop_length=160, win_length=640,
                    window='hamming', center=True)| ** 2
  log-Mel  = librosa.power_to_db(librosa.filters.mel(sr=16000, n_fft=1024,
                                                     n_mels=128) @ S)
  log-STFT = librosa.power_to_db(S + 1e-8)

computed here for a zero-padded batch `[batch, samples]` with per-utterance
sample counts, so that padding never changes a valid value: frames are centred
with zero padding exactly as librosa >= 0.10 does, and each utterance's 80 dB
floor is relative to the maximum over its own valid frames.

Utterances longer than `max_frames` (14 s) keep their middle `max_frames`
frames (`start = (T - max_frames) // 2`, the authors' code). The crop is
applied to the power spectrogram, before the dB floor, so the features of a
long utterance are those of the 14 s the model sees (the paper: "we only
extracted the middle 14s to calculate spectrogram").

Standardisation is a pair of pure functions around an explicit
`Standardizer` value: fit it on the training split, apply it anywhere.
"""

import concurrent.futures
import dataclasses
import functools
import hashlib
import json
from typing import Iterable, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import librosa
import numpy as np

SAMPLE_RATE = 16000


@dataclasses.dataclass(frozen=True)
class FeatureParams:
  """Everything that determines a feature array; the paper's values default."""
  kind: str = 'mel'            # 'mel' (log-Mel) or 'stft' (log power STFT).
  sample_rate: int = SAMPLE_RATE  # Hz of the input waveforms.
  n_fft: int = 1024            # FFT size (64 ms).
  hop_length: int = 160        # Frame shift in samples (10 ms).
  win_length: int = 640        # Hamming window in samples (40 ms).
  n_mels: int = 128            # Mel bands (kind='mel').
  amin: float = 1e-10          # power_to_db floor before the log.
  top_db: float = 80.0         # Per-utterance dynamic range in dB.
  stft_offset: float = 1e-8    # Added to the power before the log (kind='stft').
  max_frames: int = 1400       # Longer utterances keep their middle frames.

  def __post_init__(self):
    if self.kind not in ('mel', 'stft'):
      raise ValueError(f"FeatureParams.kind must be 'mel' or 'stft', got {self.kind!r}")
    if not 0 < self.win_length <= self.n_fft:
      raise ValueError(f'FeatureParams.win_length={self.win_length} must be in (0, n_fft={self.n_fft}]')
    if self.hop_length <= 0 or self.max_frames <= 0:
      raise ValueError('FeatureParams.hop_length and max_frames must be positive')

  @property
  def num_bins(self) -> int:
    return self.n_mels if self.kind == 'mel' else self.n_fft // 2 + 1

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def fingerprint(self) -> str:
    """A stable short hash of all fields (for caches and checkpoints)."""
    text = json.dumps(self.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def num_frames(num_samples, hop_length: int = 160):
  """Frames librosa's centred STFT gives for `num_samples` samples."""
  return 1 + num_samples // hop_length


def cropped_frames(num_samples, hop_length: int = 160, max_frames: int = 1400):
  """Frames kept after the middle crop: `min(1 + n // hop, max_frames)`."""
  return np.minimum(num_frames(np.asarray(num_samples), hop_length), max_frames)


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
  hop, kept = params.hop_length, params.max_frames
  margin = -(-(params.n_fft // 2) // hop)  # frames covering half a window
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
# On the CPU the batch is processed a few utterances at a time inside one
# `lax.map`, so that the frames and spectra of a chunk (a few MiB) stay in
# cache and reuse one small scratch buffer. Computed for the whole batch at
# once, they are hundreds of MiB that the allocator maps afresh on every call,
# and the page faults of touching them cost about as much as the FFT itself
# (docs/performance.md). GPUs and TPUs take the whole batch at once.

_CHUNK_FRAMES = 2000  # Frames per chunk: 4 utterances of 4 s, 1 of 14 s.


def _window(win_length: int) -> np.ndarray:
  return librosa.filters.get_window('hamming', win_length, fftbins=True).astype(np.float32)


def _segments(waveforms, lengths, starts, num_out: int, *, n_fft: int,
              hop_length: int):
  """The samples each utterance's kept frames cover: `[batch, span]`.

  Zeroes everything beyond each length (padding never leaks in), pads
  `n_fft // 2` zeros in front (librosa's centred frames) and keeps, from
  each utterance's first kept frame (the crop), the `span` samples of its
  `num_out` frames.
  """
  batch, samples = waveforms.shape
  signal = jnp.where(jnp.arange(samples)[None] < lengths[:, None], waveforms, 0.0)
  span = (num_out - 1) * hop_length + n_fft
  # Room for the latest start: that of an utterance filling the whole width.
  latest = max(int(num_frames(samples, hop_length)) - num_out, 0) // 2
  right = max(latest * hop_length + span - n_fft // 2 - samples, 0)
  padded = jnp.pad(signal, ((0, 0), (n_fft // 2, right)))
  if latest == 0:  # No utterance is long enough to be cropped.
    return padded[:, :span]
  take = lambda row, s: jax.lax.dynamic_slice(row, (s * hop_length,), (span,))
  return jax.vmap(take)(padded, starts)


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


def _spectrogram(waveforms, lengths, per_chunk, *, n_fft: int,
                 hop_length: int, win_length: int, max_frames: int):
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
  num_out = min(num_frames(samples, hop_length), max_frames)
  total = num_frames(lengths, hop_length)
  starts = jnp.maximum(total - max_frames, 0) // 2
  frame_lengths = jnp.minimum(total, max_frames).astype(jnp.int32)

  segments = _segments(waveforms, lengths, starts, num_out, n_fft=n_fft,
                       hop_length=hop_length)

  def chunk_fn(args):
    segment, frame_length = args
    power = _chunk_power(segment, num_out, n_fft=n_fft, hop_length=hop_length,
                         win_length=win_length)
    return per_chunk(power, frame_length)

  size = _chunk_size(waveforms, num_out)
  rows = -(-batch // size) * size  # Whole chunks; extra rows are empty.
  pad = lambda x: jnp.pad(x, [(0, rows - batch)] + [(0, 0)] * (x.ndim - 1))
  chunked = [pad(x).reshape(rows // size, size, *x.shape[1:])
             for x in (segments, frame_lengths)]
  out = jax.lax.map(chunk_fn, tuple(chunked))
  out = jax.tree.map(lambda x: x.reshape(rows, *x.shape[2:])[:batch], out)
  return out, frame_lengths


def power_spectrogram(waveforms, lengths, *, n_fft: int = 1024,
                      hop_length: int = 160, win_length: int = 640,
                      max_frames: int = 1400):
  """|STFT|^2 of a padded batch, cropped to the middle `max_frames` frames.

  Args:
    waveforms: `[batch, samples]` float32, zero beyond each length.
    lengths: `[batch]` int sample counts.
    n_fft, hop_length, win_length: the STFT (Hamming window, centred frames).
    max_frames: longer utterances keep their middle `max_frames` frames.

  Returns:
    power: `[batch, frames, n_fft // 2 + 1]` float32, zero on padding frames.
    frame_lengths: `[batch]` int32 valid frames, `min(1 + n // hop, max_frames)`.
  """
  def masked(power, frame_lengths):
    return jnp.where(frame_mask(frame_lengths, power.shape[1])[..., None], power, 0.0)
  return _spectrogram(waveforms, lengths, masked, n_fft=n_fft,
                      hop_length=hop_length, win_length=win_length,
                      max_frames=max_frames)


def power_to_db(power, frame_lengths, *, amin: float = 1e-10,
                top_db: float = 80.0):
  """`librosa.power_to_db(power, ref=1.0)` per utterance of a padded batch.

  The `top_db` floor is relative to each utterance's maximum over its valid
  frames; padding frames come out as 0.
  """
  db = 10.0 * jnp.log10(jnp.maximum(power, amin))
  mask = frame_mask(frame_lengths, power.shape[1])[..., None]
  peak = jnp.max(jnp.where(mask, db, -jnp.inf), axis=(1, 2), keepdims=True)
  db = jnp.maximum(db, peak - top_db)
  return jnp.where(mask, db, 0.0)


def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = 1024,
                   n_mels: int = 128) -> np.ndarray:
  """librosa's Slaney Mel filterbank, transposed: `[n_fft // 2 + 1, n_mels]`."""
  return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels).T.astype(np.float32)


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


# --------------------------------------------------------------------------
# The two feature kinds.


@functools.partial(jax.jit, static_argnames=(
    'sample_rate', 'n_fft', 'hop_length', 'win_length', 'n_mels', 'amin',
    'top_db', 'max_frames'))
def log_mel(waveforms, lengths, *, sample_rate: int = SAMPLE_RATE,
            n_fft: int = 1024, hop_length: int = 160, win_length: int = 640,
            n_mels: int = 128, amin: float = 1e-10, top_db: float = 80.0,
            max_frames: int = 1400):
  """Log-Mel spectrogram of a padded batch (SPEC.md section 1).

  Args:
    waveforms: `[batch, samples]` float32 at `sample_rate`, zero padded.
    lengths: `[batch]` valid sample counts.
    sample_rate, n_fft, hop_length, win_length, n_mels: the STFT and Mel bank.
    amin, top_db: as `librosa.power_to_db` (ref 1.0).
    max_frames: the middle-crop length (14 s).

  Returns:
    features: `[batch, frames, n_mels]` float32 dB, 0 on padding frames.
    frame_lengths: `[batch]` int32, `min(1 + n // hop_length, max_frames)`.
  """
  bank = mel_filterbank(sample_rate, n_fft, n_mels)
  def to_db(power, frame_lengths):
    return power_to_db(apply_filterbank(power, bank), frame_lengths,
                       amin=amin, top_db=top_db)
  return _spectrogram(waveforms, lengths, to_db, n_fft=n_fft,
                      hop_length=hop_length, win_length=win_length,
                      max_frames=max_frames)


@functools.partial(jax.jit, static_argnames=(
    'n_fft', 'hop_length', 'win_length', 'amin', 'top_db', 'offset', 'max_frames'))
def log_stft(waveforms, lengths, *, n_fft: int = 1024, hop_length: int = 160,
             win_length: int = 640, amin: float = 1e-10, top_db: float = 80.0,
             offset: float = 1e-8, max_frames: int = 1400):
  """Log power STFT of a padded batch: `power_to_db(S + offset)`.

  Args and returns as `log_mel`, with `n_fft // 2 + 1` (513) bins.
  """
  def to_db(power, frame_lengths):
    return power_to_db(power + offset, frame_lengths, amin=amin, top_db=top_db)
  return _spectrogram(waveforms, lengths, to_db, n_fft=n_fft,
                      hop_length=hop_length, win_length=win_length,
                      max_frames=max_frames)


def extract(waveforms, lengths, params: FeatureParams = FeatureParams()):
  """`log_mel` or `log_stft` of a padded batch, as `params` says."""
  common = dict(n_fft=params.n_fft, hop_length=params.hop_length,
                win_length=params.win_length, amin=params.amin,
                top_db=params.top_db, max_frames=params.max_frames)
  if params.kind == 'mel':
    return log_mel(waveforms, lengths, sample_rate=params.sample_rate,
                   n_mels=params.n_mels, **common)
  return log_stft(waveforms, lengths, offset=params.stft_offset, **common)


def extract_numpy(waveforms: Sequence[np.ndarray],
                  params: FeatureParams = FeatureParams(), *,
                  batch_size: int = 32, pad_multiple: int = SAMPLE_RATE,
                  workers: int = 2) -> list[np.ndarray]:
  """Features of a list of 1-D waveforms, as a list of `[frames_i, bins]`.

  Each waveform is first cut to the samples its kept frames read
  (`crop_waveform`), so a batch costs memory bounded by `max_frames`
  whatever the lengths. Utterances are sorted by length and batched; each batch is padded to a
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


# --------------------------------------------------------------------------
# Per-bin standardisation (statistics of the training split only).


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
