"""Batches for training and evaluation: length buckets, padding masks, grain.

Every batch is a dict of numpy arrays with a fixed batch size and a time axis
padded to one of a few bucket lengths, so a whole run compiles at most one
train-step program per bucket:

  features       [batch, bucket, bins] float32, standardised, 0 on padding
  frame_lengths  [batch] int32 (padding examples: the shortest bucket... 1)
  labels         [batch] int32
  mask           [batch] bool, False for padding examples

With the features computed in the train step (`Examples.wave`), the first
two are the cached, cropped waveforms instead (`pad_waveform_batch`):

  waveforms      [batch, waveform_width(bucket)] float32, 0 on padding
  num_samples    [batch] int32 (padding examples: 1)

Training order is a grain `MapDataset`: a seeded shuffle, reshuffled each
epoch, repeated forever and batched. Batch i is a pure function of (seed, i),
and the iterator's state, saved with each checkpoint, is its position.
"""

import dataclasses
from typing import Iterator, Sequence

import grain
import numpy as np

from jaxser import features as features_lib
from jaxser import standardize
from jaxser.errors import ConfigError

__all__ = ['Examples', 'bucket_of_width', 'eval_batches', 'pad_batch',
           'pad_waveform_batch', 'train_dataset', 'train_iterator', 'waveform_width']


def _bucket_for(length: int, buckets: Sequence[int]) -> int:
  """The smallest bucket >= `length`.

  Raises:
    ConfigError: `length` exceeds the largest bucket.
  """
  for bucket in sorted(buckets):
    if length <= bucket:
      return int(bucket)
  raise ConfigError(f'buckets: an utterance of {length} frames exceeds the '
                    f'largest bucket {max(buckets)}; raise config.buckets or '
                    f'lower config.features.max_frames')


@dataclasses.dataclass(frozen=True)
class Examples:
  """Random-access utterances of one split.

  Attributes:
    features: anything indexable by an int giving `[frames, bins]` arrays
      (a FeatureCache, a list).
    labels: `[n]` int32 class indices, aligned with `indices`.
    indices: `[n]` positions of this split's utterances in `features`.
    standardizer: the training split's per-bin statistics.
    wave: set when `features` holds cropped waveforms (`[samples]`, a
      waveform cache) featurised in the train step with these parameters;
      their batches are `pad_waveform_batch`'s.
  """
  features: Sequence
  labels: np.ndarray
  indices: np.ndarray
  standardizer: standardize.Standardizer
  wave: features_lib.FeatureParams | None = None

  def __len__(self):
    return len(self.indices)

  def lengths(self) -> np.ndarray:
    """Frames of each utterance (of its features, for waveforms)."""
    lengths = np.array([len(self.features[int(i)]) for i in self.indices], np.int64)
    return lengths if self.wave is None else features_lib.cropped_frames(lengths, self.wave)

  def batch(self, rows, *, batch_size: int, buckets: Sequence[int],
            longest: int | None = None) -> dict:
    """The padded batch of these rows (positions in the split)."""
    items = [self.features[int(self.indices[r])] for r in rows]
    labels = [int(self.labels[r]) for r in rows]
    if self.wave is not None:
      return pad_waveform_batch(items, labels, batch_size=batch_size, buckets=buckets,
                                params=self.wave, longest=longest)
    return pad_batch(items, labels, batch_size=batch_size, buckets=buckets,
                     standardizer=self.standardizer, longest=longest)


def pad_batch(items: Sequence[np.ndarray], labels: Sequence[int], *,
              batch_size: int, buckets: Sequence[int],
              standardizer: standardize.Standardizer,
              longest: int | None = None) -> dict:
  """Pads up to `batch_size` utterances into one batch (see module docstring).

  Args:
    items: up to `batch_size` arrays `[frames_i, bins]`.
    labels: their class indices.
    batch_size: rows of the batch; rows past `len(items)` are padding.
    buckets: the allowed padded lengths.
    standardizer: applied to the valid frames.
    longest: the longest utterance of the global batch these items are one
      process's slice of, so that every process pads to the same bucket
      (default: the longest of `items`).

  Returns:
    The batch dict.
  """
  if not 0 < len(items) <= batch_size:
    raise ValueError(f'pad_batch: {len(items)} items for a batch of {batch_size}')
  bins = items[0].shape[-1]
  lengths = np.array([len(x) for x in items], np.int32)
  bucket = _bucket_for(max(int(lengths.max()), longest or 0), buckets)
  out = np.zeros((batch_size, bucket, bins), np.float32)
  mean, std = standardizer
  for row, x in enumerate(items):
    out[row, :len(x)] = (x - mean) / std
  frame_lengths = np.ones(batch_size, np.int32)
  frame_lengths[:len(items)] = lengths
  full_labels = np.zeros(batch_size, np.int32)
  full_labels[:len(items)] = labels
  mask = np.arange(batch_size) < len(items)
  return {'features': out, 'frame_lengths': frame_lengths,
          'labels': full_labels, 'mask': mask}


def waveform_width(bucket: int, params: features_lib.FeatureParams) -> int:
  """Samples of a waveform batch of `bucket` frames: the longest cropped
  waveform of that many frames (`features.crop_waveform`) fits."""
  return (bucket + 2 * features_lib.crop_margin(params)) * params.hop_length


def bucket_of_width(width: int, params: features_lib.FeatureParams) -> int:
  """The bucket of a waveform batch `width` samples wide (`waveform_width`'s inverse)."""
  return width // params.hop_length - 2 * features_lib.crop_margin(params)


def pad_waveform_batch(items: Sequence[np.ndarray], labels: Sequence[int], *,
                       batch_size: int, buckets: Sequence[int],
                       params: features_lib.FeatureParams,
                       longest: int | None = None) -> dict:
  """`pad_batch` for cropped waveforms: `waveforms`, `num_samples`, `labels`,
  `mask` (module docstring). The bucket is that of the features' frames;
  `longest` is in frames."""
  if not 0 < len(items) <= batch_size:
    raise ValueError(f'pad_waveform_batch: {len(items)} items for a batch of {batch_size}')
  lengths = np.array([len(x) for x in items], np.int32)
  frames = int(features_lib.cropped_frames(lengths, params).max())
  bucket = _bucket_for(max(frames, longest or 0), buckets)
  out = np.zeros((batch_size, waveform_width(bucket, params)), np.float32)
  for row, x in enumerate(items):
    out[row, :len(x)] = x
  num_samples = np.ones(batch_size, np.int32)
  num_samples[:len(items)] = lengths
  full_labels = np.zeros(batch_size, np.int32)
  full_labels[:len(items)] = labels
  return {'waveforms': out, 'num_samples': num_samples, 'labels': full_labels,
          'mask': np.arange(batch_size) < len(items)}


def train_dataset(examples: Examples, *, batch_size: int,
                  buckets: Sequence[int], seed: int,
                  shard_index: int = 0, shard_count: int = 1) -> grain.MapDataset:
  """An endless, seeded, per-epoch reshuffled dataset of training batches.

  With `shard_count` > 1 (data-parallel hosts), every process draws the same
  global order and keeps its own contiguous slice of each global batch, so the
  union over processes is the batch a single process would see.
  """
  if len(examples) == 0:
    raise ConfigError('the training split is empty')
  if batch_size % shard_count:
    raise ConfigError(f'batch_size={batch_size} does not divide over {shard_count} processes')
  local = batch_size // shard_count
  lengths = examples.lengths() if shard_count > 1 else None

  def make(rows):
    # Every process pads its slice to the bucket of the whole global batch.
    longest = int(lengths[rows].max()) if lengths is not None else None
    rows = rows[shard_index * local:(shard_index + 1) * local]
    return examples.batch(rows, batch_size=local, buckets=buckets, longest=longest)

  return (grain.MapDataset.range(len(examples))
          .seed(seed)
          .shuffle()
          .repeat(None)
          .batch(batch_size, drop_remainder=True, batch_fn=np.asarray)
          .map(make))


def train_iterator(dataset: grain.MapDataset, *, prefetch: int = 4,
                   threads: int = 1) -> grain.DatasetIterator:
  """A checkpointable iterator that prepares batches ahead of the step."""
  options = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch)
  return iter(dataset.to_iter_dataset(options))


def eval_batches(examples: Examples, *, batch_size: int,
                 buckets: Sequence[int]) -> Iterator[tuple[np.ndarray, dict]]:
  """Every utterance of a split once, in batches sorted by length.

  Yields:
    `(rows, batch)`: `rows` are positions in `examples` of the batch's valid
    rows, so predictions can be put back in the split's order.
  """
  order = np.argsort(examples.lengths(), kind='stable')
  for start in range(0, len(order), batch_size):
    rows = order[start:start + batch_size]
    yield rows, examples.batch(rows, batch_size=batch_size, buckets=buckets)
