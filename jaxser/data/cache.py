"""The feature cache: spectrograms computed once, read at random afterwards.

Features depend on the audio files and on `FeatureParams`, so the cache key
hashes both: every utterance's id, path, file size and modification time,
and `params.fingerprint()`. A changed file, a different utterance set or any
changed parameter gives a new key, hence a new folder; nothing stale is read.

A cache folder `<cache_dir>/<kind>-<key>/` holds

  features.f32  all frames of all utterances, `[total_frames, bins]`
                little-endian float32, C order, no header (memory-mapped);
  index.json    ids, offsets and frame lengths (in the order of the
                utterances given), the parameters, and the utterances whose
                audio could not be decoded, with the reason.

It is written under a temporary name and renamed into place when complete,
so an interrupted extraction never passes for a cache. Audio that fails to
decode is reported like a load-time fault (`jaxser.data.records.Issue`,
naming the file), the extraction carries on with the rest, and the cache
remembers the failures, so reopening it reports them again.
"""

import hashlib
import json
import os
import pathlib
from typing import Sequence

from absl import logging
import numpy as np
import soundfile as sf
import tqdm

from jaxser import audio
from jaxser import features
from jaxser.data import records
from jaxser.errors import AudioError
from jaxser.errors import CorpusError

VERSION = 1  # bump when the file format or the extraction changes
DATA_FILE = 'features.f32'
INDEX_FILE = 'index.json'
_DTYPE = np.dtype('<f4')


def corpus_fingerprint(utterances: Sequence[records.Utterance]) -> str:
  """A hash of the utterances' ids, paths, file sizes and modification times."""
  digest = hashlib.sha256()
  for utt in sorted(utterances, key=lambda u: u.id):
    try:
      stat = os.stat(utt.path)
      size, mtime = stat.st_size, stat.st_mtime_ns
    except OSError:
      size, mtime = -1, -1
    digest.update(f'{utt.id}\t{utt.path}\t{size}\t{mtime}\n'.encode())
  return digest.hexdigest()


def cache_key(utterances: Sequence[records.Utterance],
              params: features.FeatureParams) -> str:
  """The cache folder's key: corpus fingerprint, parameters and format version."""
  text = f'{VERSION}\n{corpus_fingerprint(utterances)}\n{params.fingerprint()}'
  return hashlib.sha256(text.encode()).hexdigest()[:20]


class FeatureCache:
  """Random access to the cached `[frames, bins]` features of a corpus.

  Make one with `FeatureCache.build`. Items follow the order of the
  utterances given to `build`, less those whose audio failed to decode
  (`skipped`).

  Attributes:
    folder: the cache folder.
    params: the `FeatureParams` the features were computed with.
    ids: the utterance ids, one per item.
    frame_lengths: `[n]` int32 frames per item.
    utterances: the records, one per item.
    skipped: `Issue`s for the utterances whose audio could not be decoded.
  """

  def __init__(self, folder, utterances: Sequence[records.Utterance]):
    self.folder = pathlib.Path(folder)
    index = json.loads((self.folder / INDEX_FILE).read_text())
    self.params = features.FeatureParams(**index['params'])
    self.num_bins = index['num_bins']
    self._total_frames = index['total_frames']
    self.ids = tuple(index['ids'])
    self.frame_lengths = np.asarray(index['frame_lengths'], np.int32)
    self._offsets = np.asarray(index['offsets'], np.int64)
    self.skipped = tuple(records.Issue(**i) for i in index['skipped'])
    by_id = {u.id: u for u in utterances}
    self.utterances = [by_id[i] for i in self.ids]
    self._position = {i: k for k, i in enumerate(self.ids)}
    self._data = None  # opened on first access (and again after unpickling)

  @classmethod
  def build(cls, utterances: Sequence[records.Utterance],
            params: features.FeatureParams, cache_dir, *, strict: bool = False,
            batch_size: int = 32, chunk_size: int = 256) -> 'FeatureCache':
    """Opens the cache for these utterances and parameters, extracting if needed.

    Args:
      utterances: the corpus (ids must be unique).
      params: the feature parameters.
      cache_dir: where cache folders live.
      strict: raise after extraction if any audio failed to decode.
      batch_size: utterances per feature batch.
      chunk_size: utterances decoded and held in memory at a time.

    Returns:
      The cache, in the order of `utterances` (less the failures).

    Raises:
      CorpusError: repeated ids; no utterance could be decoded; or `strict`
        and some could not (the message lists every such file).
    """
    ids = [u.id for u in utterances]
    if len(set(ids)) != len(ids):
      raise CorpusError('feature cache: utterance ids are not unique')
    folder = pathlib.Path(cache_dir) / f'{params.kind}-{cache_key(utterances, params)}'
    if (folder / INDEX_FILE).is_file():
      logging.info('feature cache: reusing %s', folder)
    else:
      _extract_to(folder, utterances, params, batch_size=batch_size,
                  chunk_size=chunk_size)
    cache = cls(folder, utterances)
    if cache.skipped:
      message = (f'feature cache {folder}: {len(cache.skipped)} utterances '
                 'could not be decoded and are left out:\n'
                 + records.format_issues(cache.skipped))
      if strict:
        raise CorpusError(message)
      logging.warning('%s', message)
    return cache

  def __len__(self) -> int:
    return len(self.ids)

  def __getitem__(self, i: int) -> np.ndarray:
    """Item i's features, `[frames, bins]` float32 (a read-only view)."""
    if not -len(self) <= i < len(self):
      raise IndexError(f'feature cache index {i} out of range ({len(self)})')
    if self._data is None:
      self._data = np.memmap(self.folder / DATA_FILE, dtype=_DTYPE, mode='r',
                             shape=(self._total_frames, self.num_bins))
    start = self._offsets[i]
    return self._data[start:start + self.frame_lengths[i]]

  def index_of(self, utterance_id: str) -> int:
    """The item number of an utterance id."""
    return self._position[utterance_id]

  def __getstate__(self):
    # Worker processes reopen the memory map instead of copying the data.
    state = dict(self.__dict__)
    state['_data'] = None
    return state


def _extract_to(folder: pathlib.Path, utterances, params, *, batch_size: int,
                chunk_size: int) -> None:
  """Computes every utterance's features into `folder`, atomically."""
  with records.atomic_folder(folder, lambda f: (f / INDEX_FILE).is_file()) as tmp:
    offsets, lengths, skipped = _write_features(
        tmp / DATA_FILE, utterances, params, batch_size, chunk_size)
    if len(skipped) == len(utterances):
      raise CorpusError('feature cache: no utterance could be decoded:\n'
                        + records.format_issues(skipped))
    kept = [u.id for u in utterances if u.id in offsets]
    index = {
        'version': VERSION, 'params': params.to_dict(),
        'num_bins': params.num_bins, 'total_frames': int(sum(lengths.values())),
        'ids': kept, 'offsets': [offsets[i] for i in kept],
        'frame_lengths': [lengths[i] for i in kept],
        'skipped': [vars(issue) for issue in skipped],
    }
    (tmp / INDEX_FILE).write_text(json.dumps(index))


def _write_features(path: pathlib.Path, utterances, params, batch_size: int,
                    chunk_size: int):
  """Decodes and extracts in chunks of similar length, appending to `path`.

  Returns:
    `{id: frame offset}`, `{id: frames}` and the decoding failures.
  """
  order = sorted(utterances, key=_expected_samples)  # similar lengths batch well
  offsets, lengths, skipped, total = {}, {}, [], 0
  with open(path, 'wb') as out, tqdm.tqdm(
      total=len(order), desc=f'{params.kind} features', unit='utt') as bar:
    for start in range(0, len(order), chunk_size):
      chunk, waveforms = [], []
      for utt in order[start:start + chunk_size]:
        try:
          waveforms.append(audio.load(utt.path, sample_rate=params.sample_rate))
          chunk.append(utt)
        except AudioError as e:
          skipped.append(_issue(utt.path, e))
      if waveforms:
        extracted = features.extract_numpy(waveforms, params, batch_size=batch_size)
        for utt, feature in zip(chunk, extracted):
          out.write(np.ascontiguousarray(feature, _DTYPE).tobytes())
          offsets[utt.id], lengths[utt.id] = total, int(feature.shape[0])
          total += feature.shape[0]
      bar.update(len(order[start:start + chunk_size]))
  return offsets, lengths, skipped


def _expected_samples(utt: records.Utterance) -> float:
  """Duration from the header, for ordering only (unreadable files: 0)."""
  try:
    return sf.info(utt.path).duration
  except Exception:  # reported when the file is decoded
    return 0.0


def _issue(path: str, error: AudioError) -> records.Issue:
  """The load-time fault kind of an `audio.load` error."""
  text = str(error)
  if 'does not exist' in text or 'not a regular file' in text:
    kind = 'missing file'
  elif 'empty audio' in text:
    kind = 'empty audio'
  elif 'non-finite' in text:
    kind = 'non-finite samples'
  else:
    kind = 'unreadable audio'
  return records.Issue(kind, path, text.removeprefix(f'{path}: '))
