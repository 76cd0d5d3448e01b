"""The feature cache: spectrograms computed once, read at random afterwards.

The key. Features depend on the audio files' content and on `FeatureParams`,
so a cache folder's key hashes the format `_VERSION`, the corpus' fingerprint
(`fingerprint.corpus_fingerprint`: every utterance's record and a hash of its
file's bytes, memoised by stat) and `params.fingerprint()`. An edited file
(even one whose size and modification time were set back), a different
utterance set or label, or any changed parameter gives a new key, hence a new
folder; nothing stale is read.

Waveforms. With the features computed in the train step (waveform
augmentation), the corpus' decoded, cropped waveforms (every fold's) are
cached alike (`build(..., waveforms=True)`): folder `wave-<key>`, one sample per
row, the key marked as a waveform cache's.

The format. A cache folder `<cache_dir>/<kind>-<key>/` holds

  features.f32  all frames of all utterances, `[total_frames, bins]`
                little-endian float32, C order, no header (memory-mapped);
  index.json    the format version, the parameters, the data file's size in
                bytes; per kept utterance (in the order of the utterances
                given) its id, frame offset, frame length and the CRC-32 of
                its id and float32 bytes; and the utterances left out (with their
                ids), with the reason.

It is written under a unique temporary name, flushed to disk and renamed into
place when complete (`fileio.atomic_folder`), so an interrupted or crashed
extraction never passes for a cache. A full disk is one `CorpusError` naming
the folder and the system's reason, with nothing left behind.

The verification. Every time a folder is opened it is checked in full before
use: index.json parses, has this `_VERSION` and these parameters; the data
file has exactly `total_frames * bins * 4` bytes; the offsets tile it without
gap or overlap; the kept and the left-out ids are exactly the utterances asked
for; and every utterance's bytes match their checksum and are finite (read
one utterance at a time, so memory does not grow with the cache). A folder
that fails is derived data: a warning names it and the cause, and it is
removed and extracted again.

What is left out. Utterances are reported like load-time faults
(`jaxser.data.records.Issue`, naming the file), the extraction carries on with
the rest, and the cache remembers them, so reopening it reports them again:

- audio that fails to decode (`audio.load`'s `AudioError`, by its `kind`);
- audio whose bytes equal an earlier utterance's (by id order): 'duplicate
  audio', naming the other file, since a copy could land in both train and
  test; if the copies carry different labels, every copy is left out
  ('duplicate audio with conflicting labels');
- audio whose features are not finite ('non-finite features'): finite
  samples whose power overflows float32 (a float file with values near
  1e20), which would otherwise train as NaN.
"""

import hashlib
import json
import os
import pathlib
import shutil
from typing import Sequence
import zlib

from absl import logging
import numpy as np
import soundfile as sf

from jaxser import audio
from jaxser import features
from jaxser import fileio
from jaxser import progress
from jaxser.data import fingerprint
from jaxser.data import records
from jaxser.errors import AudioError
from jaxser.errors import CorpusError

__all__ = ['DATA_FILE', 'INDEX_FILE', 'FeatureCache', 'verify']

_VERSION = 2  # bump when the file format or the extraction changes
DATA_FILE = 'features.f32'
INDEX_FILE = 'index.json'
_DTYPE = np.dtype('<f4')


def _cache_key(corpus_fingerprint: str, params: features.FeatureParams,
               waveforms: bool) -> str:
  """The cache folder's key: format version, corpus fingerprint, parameters
  (and for a waveform cache, that it is one)."""
  text = f'{_VERSION}\n{corpus_fingerprint}\n{params.fingerprint()}'
  return hashlib.sha256((text + '\nwaveforms' * waveforms).encode()).hexdigest()[:20]


def _shape(params: features.FeatureParams, waveforms: bool) -> tuple[int, int]:
  """`(values per row, most rows per item)`: bins and frames, or 1 and samples."""
  if waveforms:  # `features.crop_waveform`'s longest
    return 1, (params.max_frames + 2 * features.crop_margin(params)) * params.hop_length
  return params.num_bins, params.max_frames


class FeatureCache:
  """Random access to the cached `[frames, bins]` features of a corpus.

  Make one with `FeatureCache.build`. Items follow the order of the
  utterances given to `build`, less those left out (`skipped`). A waveform
  cache (`build(..., waveforms=True)`, folder `wave-<key>`) holds instead
  the decoded, cropped waveforms (`features.crop_waveform`, `[samples]`)
  whose features the train step computes; it is made, keyed and verified
  alike.

  Attributes:
    folder: the cache folder.
    params: the `FeatureParams` the features were computed with.
    ids: the utterance ids, one per item.
    frame_lengths: `[n]` int32 frames (samples) per item.
    utterances: the records, one per item.
    skipped: `Issue`s for the utterances left out (undecodable audio,
      duplicate audio, non-finite features), naming the current files.
  """

  def __init__(self, folder, utterances: Sequence[records.Utterance]):
    self.folder = pathlib.Path(folder)
    index = json.loads((self.folder / INDEX_FILE).read_text())
    self.params = features.FeatureParams(**index['params'])
    self.num_bins = index['num_bins']
    self.waveforms = index.get('waveforms', False)
    self._total_frames = index['total_frames']
    self.ids = tuple(index['ids'])
    self.frame_lengths = np.asarray(index['frame_lengths'], np.int32)
    self._offsets = np.asarray(index['offsets'], np.int64)
    by_id = {u.id: u for u in utterances}
    # Paths are not part of the key (a moved corpus reuses its cache), so
    # the issues name the files as they are now.
    self.skipped = tuple(records.Issue(i['kind'], by_id[i['id']].path, i['detail'])
                         for i in index['skipped'])
    self.utterances = [by_id[i] for i in self.ids]
    self._position = {i: k for k, i in enumerate(self.ids)}
    self._data = None  # opened on first access (and again after unpickling)

  @classmethod
  def build(cls, utterances: Sequence[records.Utterance],
            params: features.FeatureParams, cache_dir, *, strict: bool = False,
            batch_size: int = 32, chunk_size: int = 256,
            waveforms: bool = False) -> 'FeatureCache':
    """Opens the cache for these utterances and parameters, extracting if needed.

    A folder that fails verification is removed and extracted again.

    Args:
      utterances: the corpus (ids must be unique).
      params: the feature parameters.
      cache_dir: where cache folders (and the memo of file hashes) live.
      strict: raise if any utterance is left out.
      batch_size: utterances per feature batch.
      chunk_size: utterances decoded and held in memory at a time.
      waveforms: cache the cropped waveforms, not their features.

    Returns:
      The cache, in the order of `utterances` (less those left out).

    Raises:
      CorpusError: repeated ids; no utterance could be used; the folder
        cannot be written (a full disk); or `strict` and some utterance is
        left out (the message lists every such file).
    """
    ids = [u.id for u in utterances]
    if len(set(ids)) != len(ids):
      raise CorpusError('feature cache: utterance ids are not unique')
    hashes = fingerprint.content_hashes([u.path for u in utterances], cache_dir)
    key = _cache_key(fingerprint.from_content_hashes(utterances, hashes), params,
                     waveforms)
    folder = pathlib.Path(cache_dir) / f'{"wave" if waveforms else params.kind}-{key}'
    problem = verify(folder, ids, params, waveforms) if folder.exists() else 'absent'
    if problem is None:
      logging.info('feature cache: reusing %s', folder)
    else:
      if folder.exists():
        logging.warning('feature cache %s is damaged (%s): removing it and '
                        'extracting again', folder, problem)
        shutil.rmtree(folder, ignore_errors=True)
      try:
        _extract_to(folder, utterances, params, fingerprint.duplicate_audio(utterances, hashes),
                    batch_size=batch_size, chunk_size=chunk_size, waveforms=waveforms)
      except OSError as e:
        raise CorpusError(f'feature cache {folder}: cannot be written '
                          f'({fileio.reason(e)}); nothing was kept') from e
    cache = cls(folder, utterances)
    if cache.skipped:
      message = (f'feature cache {folder}: {len(cache.skipped)} utterances '
                 'are left out:\n' + records.format_issues(cache.skipped))
      if strict:
        raise CorpusError(message)
      logging.warning('%s', message)
    return cache

  def __len__(self) -> int:
    return len(self.ids)

  def __getitem__(self, i: int) -> np.ndarray:
    """Item i's features, `[frames, bins]` float32 (a waveform cache's
    `[samples]`), a read-only view."""
    if not -len(self) <= i < len(self):
      raise IndexError(f'feature cache index {i} out of range ({len(self)})')
    if self._data is None:
      self._data = np.memmap(self.folder / DATA_FILE, dtype=_DTYPE, mode='r',
                             shape=(self._total_frames, self.num_bins))
    start = self._offsets[i]
    item = self._data[start:start + self.frame_lengths[i]]
    return item[:, 0] if self.waveforms else item

  def index_of(self, utterance_id: str) -> int:
    """The item number of an utterance id."""
    return self._position[utterance_id]

  def __getstate__(self):
    # Worker processes reopen the memory map instead of copying the data.
    state = dict(self.__dict__)
    state['_data'] = None
    return state


# --------------------------------------------------------------------------
# Verification.


def verify(folder, ids: Sequence[str], params: features.FeatureParams,
           waveforms: bool = False) -> str | None:
  """Why a cache folder cannot be used for these utterances, or None.

  Reads the whole data file, one utterance at a time.

  Args:
    folder: the cache folder.
    ids: the ids of the utterances asked for.
    params: the feature parameters asked for.
    waveforms: whether a waveform cache is asked for.

  Returns:
    The cause in a few words, or None if the folder is sound.
  """
  folder = pathlib.Path(folder)
  try:
    index = json.loads((folder / INDEX_FILE).read_text())
  except (OSError, ValueError) as e:
    return f'{INDEX_FILE} unreadable ({fileio.reason(e)})'
  try:
    return (_index_problem(index, ids, params, waveforms)
            or _data_problem(folder / DATA_FILE, index))
  except OSError as e:  # the index was read: this is the data file
    return f'{DATA_FILE} unreadable ({fileio.reason(e)})'
  except (KeyError, TypeError, ValueError, AttributeError) as e:
    return f'{INDEX_FILE} malformed ({type(e).__name__}: {fileio.reason(e)})'


def _index_problem(index: dict, ids: Sequence[str], params: features.FeatureParams,
                   waveforms: bool) -> str | None:
  """What is inconsistent in index.json, or None."""
  if index['version'] != _VERSION:
    return f'format version {index["version"]}, expected {_VERSION}'
  width, most = _shape(params, waveforms)
  if index.get('waveforms', False) != waveforms:
    return f'it holds {"waveforms" if index.get("waveforms") else "features"}'
  if index['params'] != params.to_dict() or index['num_bins'] != width:
    return 'made with other feature parameters'
  kept, skipped = list(index['ids']), [i['id'] for i in index['skipped']]
  for i in index['skipped']:  # a kind `records.Issue` refuses raises here
    records.Issue(i['kind'], '', i['detail'])
  if (len(set(kept + skipped)) != len(kept) + len(skipped)
      or set(kept + skipped) != set(ids)):
    return (f'it accounts for {len(kept)} kept and {len(skipped)} left-out '
            f'utterances, not the {len(ids)} asked for')
  lengths = np.asarray(index['frame_lengths'], np.int64)
  offsets = np.asarray(index['offsets'], np.int64)
  if not len(kept) == len(lengths) == len(offsets) == len(index['checksums']):
    return 'its lists of ids, offsets, lengths and checksums differ in length'
  if len(lengths) and not 1 <= lengths.min() <= lengths.max() <= most:
    return f'lengths outside [1, {most}]'
  order = np.argsort(offsets, kind='stable')
  ends = np.cumsum(lengths[order])
  if np.any(offsets[order] != ends - lengths[order]):
    return 'the offsets do not tile the data file'
  total = int(ends[-1]) if len(ends) else 0
  expected = total * width * _DTYPE.itemsize
  if index['total_frames'] != total or index['data_bytes'] != expected:
    return f'the sizes it records disagree ({total} frames, {expected} bytes)'
  return None


def _data_problem(path: pathlib.Path, index: dict) -> str | None:
  """What is wrong with the data file given a consistent index, or None."""
  size = os.path.getsize(path)
  if size != index['data_bytes']:
    return f'{DATA_FILE} holds {size} bytes, expected {index["data_bytes"]}'
  row = index['num_bins'] * _DTYPE.itemsize
  offsets = index['offsets']
  with open(path, 'rb') as f:
    for k in sorted(range(len(offsets)), key=offsets.__getitem__):  # file order
      chunk = f.read(index['frame_lengths'][k] * row)  # <= max_frames rows
      if _checksum(index['ids'][k], chunk) != index['checksums'][k]:
        return f'the features of {index["ids"][k]!r} do not match their checksum'
      if not np.isfinite(np.frombuffer(chunk, _DTYPE)).all():
        return f'the features of {index["ids"][k]!r} are not finite'
  return None


# --------------------------------------------------------------------------
# Extraction.


def _extract_to(folder: pathlib.Path, utterances, params,
                left_out: dict[str, records.Issue], *, batch_size: int,
                chunk_size: int, waveforms: bool) -> None:
  """Computes the features (or waveforms) of the utterances not `left_out`
  into `folder`."""
  ids = [u.id for u in utterances]
  width, _ = _shape(params, waveforms)
  with fileio.atomic_folder(folder, lambda f: verify(f, ids, params, waveforms) is None
                             ) as tmp:
    todo = [u for u in utterances if u.id not in left_out]
    written, issues = _write_features(tmp / DATA_FILE, todo, params, batch_size,
                                      chunk_size, waveforms)
    issues = {**left_out, **issues}
    if not written:
      raise CorpusError('feature cache: no utterance could be decoded and kept:\n'
                        + records.format_issues(list(issues.values())))
    kept = [i for i in ids if i in written]
    offsets, lengths, checksums = zip(*(written[i] for i in kept))
    total = sum(lengths)
    index = {
        'version': _VERSION, 'params': params.to_dict(), 'waveforms': waveforms,
        'num_bins': width, 'total_frames': total,
        'data_bytes': total * width * _DTYPE.itemsize,
        'ids': kept, 'offsets': offsets, 'frame_lengths': lengths,
        'checksums': checksums,
        'skipped': [{'id': i, **vars(issues[i])} for i in ids if i in issues],
    }
    with open(tmp / INDEX_FILE, 'w') as f:
      f.write(json.dumps(index))


def _write_features(path: pathlib.Path, utterances, params, batch_size: int,
                    chunk_size: int, waveforms: bool):
  """Decodes and extracts (or crops) in chunks of similar length, appending
  to `path`.

  Returns:
    `{id: (frame offset, frames, CRC-32)}` of the utterances written and
    `{id: Issue}` of those left out.
  """
  order = sorted(utterances, key=_expected_samples)  # similar lengths batch well
  written, issues, total = {}, {}, 0
  with open(path, 'wb') as out, progress.bar(
      len(order), 'waveforms' if waveforms else f'{params.kind} features', 'utt') as bar:
    for start in range(0, len(order), chunk_size):
      chunk, cropped = [], []
      for utt in order[start:start + chunk_size]:
        try:
          waveform = audio.load(utt.path, sample_rate=params.sample_rate)
        except AudioError as e:
          issues[utt.id] = _issue(utt.path, e)
          continue
        # Only the samples the kept frames read: a chunk of long files would
        # otherwise hold every whole decoded file at once.
        cropped.append(features.crop_waveform(waveform, params))
        chunk.append(utt)
      if cropped:
        extracted = ([w[:, None] for w in cropped] if waveforms else
                     features.extract_numpy(cropped, params, batch_size=batch_size))
        for utt, waveform, feature in zip(chunk, cropped, extracted):
          if not np.isfinite(feature).all():
            issues[utt.id] = records.Issue(
                'non-finite features', utt.path,
                features.non_finite_reason(waveform, params))
            continue
          data = np.ascontiguousarray(feature, _DTYPE).tobytes()
          out.write(data)
          written[utt.id] = (total, int(feature.shape[0]), _checksum(utt.id, data))
          total += feature.shape[0]
      bar.update(len(order[start:start + chunk_size]))
  return written, issues


def _checksum(utterance_id: str, data: bytes) -> int:
  """CRC-32 of an utterance's id and feature bytes: a swap of ids is seen."""
  return zlib.crc32(data, zlib.crc32(utterance_id.encode()))


def _expected_samples(utt: records.Utterance) -> float:
  """Duration from the header, for ordering only (unreadable files: 0)."""
  try:
    return sf.info(utt.path).duration
  except Exception:  # reported when the file is decoded
    return 0.0


def _issue(path: str, error: AudioError) -> records.Issue:
  """The load-time fault of an `audio.load` error."""
  return records.Issue(error.kind, path, str(error).removeprefix(f'{path}: '))
