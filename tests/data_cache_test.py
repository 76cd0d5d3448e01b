"""The feature cache: built once, reopened, invalidated, random access.

Also every way the reliability review fooled it: damaged folders, audio whose
features overflow, a full disk, the same audio under two ids (edits that keep
size and mtime: data_fingerprint_test.py)."""

import dataclasses
import errno
import json
import os
import pathlib
import pickle
import shutil
import zlib

from absl import logging
import numpy as np
import pytest
import soundfile as sf

from jaxser import audio
from jaxser import data
from jaxser import features
from jaxser.data import cache as cache_lib
from jaxser.data import fingerprint
from jaxser.data.records import PAPER_4CLASS
from jaxser.errors import CorpusError
from jaxser.errors import JaxserError
from data_readers_test import write_wav  # pylint: disable=g-bad-import-order

PARAMS = features.FeatureParams()
BATCH = 4  # small batches: one compiled shape for all these sub-second clips


@pytest.fixture
def corpus(tmp_path):
  clips = {'a': (0.55, 16000, 1), 'b': (0.8, 16000, 1), 'c': (0.31, 8000, 2),
           'd': (0.97, 22050, 1), 'e': (0.62, 16000, 1)}
  rows = ['path,label']
  for k, (name, (seconds, rate, channels)) in enumerate(clips.items()):
    write_wav(tmp_path / 'corpus' / f'{name}.wav', seconds, rate=rate,
              channels=channels, seed=k)
    rows.append(f'{name}.wav,{PAPER_4CLASS.classes[k % 4]}')
  (tmp_path / 'corpus' / 'manifest.csv').write_text('\n'.join(rows) + '\n')
  utterances, _ = data.load_corpus('manifest', tmp_path / 'corpus')
  return utterances


def _build(utterances, cache_dir, params=PARAMS, **kwargs):
  return cache_lib.FeatureCache.build(utterances, params, cache_dir,
                                      batch_size=BATCH, **kwargs)


def test_random_access_equals_direct_extraction(corpus, tmp_path):
  cache = _build(corpus, tmp_path / 'cache')
  assert len(cache) == 5 and cache.ids == tuple(u.id for u in corpus)
  assert cache.utterances == corpus
  for i in [3, 0, 4, 1, 2]:
    waveform = audio.load(corpus[i].path)
    expected, = features.extract_numpy([waveform], PARAMS, batch_size=BATCH)
    assert cache.frame_lengths[i] == 1 + len(waveform) // 160
    assert cache[i].shape == (cache.frame_lengths[i], 128)
    assert cache[i].dtype == np.float32
    np.testing.assert_allclose(cache[i], expected, atol=1e-4)
  assert cache.index_of('d') == 3
  np.testing.assert_array_equal(cache[-1], cache[4])
  with pytest.raises(IndexError):
    cache[5]  # pylint: disable=pointless-statement
  clone = pickle.loads(pickle.dumps(cache))
  assert clone._data is None  # the memory map is reopened, not copied
  np.testing.assert_array_equal(clone[2], cache[2])
  assert [p.name for p in (tmp_path / 'cache').iterdir()] == [cache.folder.name]


def test_reopens_without_recomputing(corpus, tmp_path, monkeypatch):
  first = _build(corpus, tmp_path / 'cache')
  stamp = os.stat(first.folder / cache_lib.DATA_FILE).st_mtime_ns
  monkeypatch.setattr(features, 'extract_numpy',
                      lambda *a, **k: pytest.fail('features recomputed'))
  again = _build(corpus, tmp_path / 'cache')
  assert again.folder == first.folder
  assert os.stat(again.folder / cache_lib.DATA_FILE).st_mtime_ns == stamp
  np.testing.assert_array_equal(again[1], first[1])


def test_changed_parameter_or_audio_invalidates(corpus, tmp_path):
  base = _build(corpus, tmp_path / 'cache')
  fewer_mels = _build(corpus, tmp_path / 'cache',
                      features.FeatureParams(n_mels=64))
  assert fewer_mels.folder != base.folder and fewer_mels[0].shape[1] == 64
  narrow = _build(corpus, tmp_path / 'cache', features.FeatureParams(top_db=10.0))
  assert narrow.folder not in (base.folder, fewer_mels.folder)
  assert np.ptp(base[0]) > 15.0
  assert np.ptp(narrow[0]) == pytest.approx(10.0)
  write_wav(corpus[1].path, 0.4, seed=99)  # the file changes on disk
  changed = _build(corpus, tmp_path / 'cache')
  assert changed.folder != base.folder
  assert changed.frame_lengths[1] == 1 + 6400 // 160
  assert base.frame_lengths[1] == 1 + 12800 // 160  # the old cache is intact
  assert _build(corpus[:4], tmp_path / 'cache').folder not in (
      base.folder, changed.folder)


def test_decoding_failures_are_reported_not_fatal(corpus, tmp_path):
  os.remove(corpus[2].path)  # vanished after the load-time check
  pathlib.Path(corpus[4].path).write_bytes(b'not audio at all')
  cache = _build(corpus, tmp_path / 'cache')
  assert cache.ids == ('a', 'b', 'd')
  assert sorted((pathlib.Path(i.path).name, i.kind) for i in cache.skipped) == [
      ('c.wav', 'missing file'), ('e.wav', 'unreadable audio')]
  # The cache is complete for the others; strict mode then refuses it, naming
  # both files, without extracting again.
  with pytest.raises(CorpusError, match=r'(?s)c\.wav.*e\.wav'):
    _build(corpus, tmp_path / 'cache', strict=True)
  with pytest.raises(CorpusError, match='no utterance could be decoded'):
    _build(corpus[2:3], tmp_path / 'other')
  assert not list((tmp_path / 'other').iterdir())  # nothing half-written


def test_repeated_ids_are_refused(corpus, tmp_path):
  with pytest.raises(CorpusError, match='not unique'):
    _build([corpus[0], corpus[0]], tmp_path / 'cache')


def _warnings(monkeypatch):
  found = []
  monkeypatch.setattr(logging, 'warning', lambda fmt, *a: found.append(fmt % a))
  return found


# ----------------------------------------------------------------------------
# Finding 1: a damaged folder is found, reported, removed and rebuilt.


def _edit_index(folder, edit):
  index = json.loads((folder / cache_lib.INDEX_FILE).read_text())
  edit(index)
  (folder / cache_lib.INDEX_FILE).write_text(json.dumps(index))


def _zero_data(folder):  # what a crash before the data reached the disk leaves
  path = folder / cache_lib.DATA_FILE
  path.write_bytes(bytes(path.stat().st_size))


def _truncate_data(folder):
  path = folder / cache_lib.DATA_FILE
  path.write_bytes(path.read_bytes()[:-1000])


def _shift_offsets(index):
  index['offsets'] = [o + 1 for o in index['offsets']]


def _swap_ids(index):  # each id on the other's features
  index['ids'][0], index['ids'][1] = index['ids'][1], index['ids'][0]


def _drop_id(index):
  for key in ('ids', 'offsets', 'frame_lengths', 'checksums'):
    del index[key][1]


def _nan_with_its_checksum(folder):  # only the finiteness check sees it
  index = json.loads((folder / cache_lib.INDEX_FILE).read_text())
  data = np.fromfile(folder / cache_lib.DATA_FILE, '<f4')
  data[index['offsets'][2] * PARAMS.num_bins + 5] = np.nan
  data.tofile(folder / cache_lib.DATA_FILE)
  rows = data.reshape(-1, PARAMS.num_bins)
  start, frames = index['offsets'][2], index['frame_lengths'][2]
  index['checksums'][2] = zlib.crc32(rows[start:start + frames].tobytes(),
                                     zlib.crc32(index['ids'][2].encode()))
  (folder / cache_lib.INDEX_FILE).write_text(json.dumps(index))


DAMAGE = {  # name -> (damage, words of the cause)
    'zeros': (_zero_data, 'checksum'),
    'truncated data': (_truncate_data, 'bytes'),
    'no data file': (lambda f: os.remove(f / cache_lib.DATA_FILE),
                     'No such file'),
    'no index': (lambda f: os.remove(f / cache_lib.INDEX_FILE), 'No such file'),
    'garbage index': (lambda f: (f / cache_lib.INDEX_FILE).write_text('{"ids": ['),
                      'unreadable'),
    'index not an object': (lambda f: (f / cache_lib.INDEX_FILE).write_text('[1]'),
                            'malformed'),
    'offsets shifted': (lambda f: _edit_index(f, _shift_offsets), 'offsets'),
    'ids swapped': (lambda f: _edit_index(f, _swap_ids), 'checksum'),
    'id dropped': (lambda f: _edit_index(f, _drop_id), '4 kept and 0 left-out'),
    'other version': (lambda f: _edit_index(f, lambda i: i.update(version=1)),
                      'version 1'),
    'other params': (lambda f: _edit_index(
        f, lambda i: i['params'].update(top_db=10.0)), 'other feature parameters'),
    'nan': (_nan_with_its_checksum, 'not finite'),
}


@pytest.mark.parametrize('damage,cause', DAMAGE.values(), ids=DAMAGE.keys())
def test_damaged_cache_is_rebuilt_not_trained_on(corpus, tmp_path, monkeypatch,
                                                 damage, cause):
  first = _build(corpus, tmp_path / 'cache')
  folder, expected = first.folder, [np.array(first[i]) for i in range(5)]
  del first  # its memory map
  damage(folder)
  warnings = _warnings(monkeypatch)
  again = _build(corpus, tmp_path / 'cache')
  assert again.folder == folder and again.ids == tuple(u.id for u in corpus)
  for i, want in enumerate(expected):
    np.testing.assert_array_equal(again[i], want)
  assert len(warnings) == 1
  assert str(folder) in warnings[0] and 'damaged' in warnings[0]
  assert cause in warnings[0]
  assert cache_lib.verify(folder, again.ids, PARAMS) is None


def test_verification_reads_one_utterance_at_a_time(corpus, tmp_path,
                                                    monkeypatch):
  cache = _build(corpus, tmp_path / 'cache')
  largest = int(max(cache.frame_lengths)) * PARAMS.num_bins * 4
  reads = []
  real_crc32 = zlib.crc32
  monkeypatch.setattr(zlib, 'crc32', lambda b, *a: reads.append(len(b))
                      or real_crc32(b, *a))
  assert cache_lib.verify(cache.folder, cache.ids, PARAMS) is None
  reads = [n for n in reads if n >= PARAMS.num_bins * 4]  # not the ids
  assert sorted(reads) == sorted(n * PARAMS.num_bins * 4
                                 for n in cache.frame_lengths)
  assert max(reads) == largest


def test_files_are_on_disk_before_the_rename(corpus, tmp_path, monkeypatch):
  events = []
  real_fsync, real_rename = os.fsync, os.rename
  def fsync(fd):
    events.append(('fsync', os.path.basename(os.readlink(f'/proc/self/fd/{fd}'))))
    real_fsync(fd)
  def rename(src, dst):
    events.append(('rename', os.path.basename(dst)))
    real_rename(src, dst)
  monkeypatch.setattr(os, 'fsync', fsync)
  monkeypatch.setattr(os, 'rename', rename)
  cache = _build(corpus, tmp_path / 'cache')
  renamed = events.index(('rename', cache.folder.name))
  synced = {name for kind, name in events[:renamed] if kind == 'fsync'}
  assert {cache_lib.DATA_FILE, cache_lib.INDEX_FILE} <= synced
  assert ('fsync', 'cache') in events[renamed:]  # the rename itself


# ----------------------------------------------------------------------------
# Finding 3: finite audio whose features overflow is left out, with the peak.


def test_overflowing_audio_is_left_out_not_trained_on(corpus, tmp_path):
  path = corpus[2].path
  rng = np.random.default_rng(0)
  sf.write(path, (1e20 * rng.standard_normal(8000)).astype(np.float32), 16000,
           subtype='FLOAT')
  assert np.isfinite(audio.load(path)).all()  # passes the load-time check
  assert not data.check_audio(path)
  cache = _build(corpus, tmp_path / 'cache')
  assert cache.ids == ('a', 'b', 'd', 'e')
  issue, = cache.skipped
  assert (issue.kind, issue.path) == ('non-finite features', path)
  assert 'overflows float32' in issue.detail
  assert 'peak amplitude' in issue.detail and 'e+20' in issue.detail
  assert all(np.isfinite(cache[i]).all() for i in range(len(cache)))
  with pytest.raises(CorpusError, match=r'(?s)non-finite features.*c\.wav'):
    _build(corpus, tmp_path / 'cache', strict=True)


# ----------------------------------------------------------------------------
# Finding 4: a full disk is one line naming the folder and the reason.


class _FullDisk:
  """A file whose writes fail with ENOSPC from the `fail_at`th on."""

  def __init__(self, f, count, fail_at):
    self._f, self._count, self._fail_at = f, count, fail_at

  def write(self, data):
    self._count.append(1)
    if len(self._count) >= self._fail_at:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return self._f.write(data)

  def __getattr__(self, name):
    return getattr(self._f, name)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._f.close()


@pytest.mark.parametrize('fail_at', [1, 3, 6, 'fsync'])  # 6: index.json
def test_full_disk_is_one_error_line_and_leaves_nothing(corpus, tmp_path,
                                                        monkeypatch, fail_at):
  cache_dir = tmp_path / 'cache'
  previous = _build(corpus[:3], cache_dir)
  count = []
  def full_open(file, mode='r', *args, **kwargs):
    f = open(file, mode, *args, **kwargs)
    names = (cache_lib.DATA_FILE, cache_lib.INDEX_FILE)
    if 'w' in mode and fail_at != 'fsync' and pathlib.Path(file).name in names:
      return _FullDisk(f, count, fail_at)
    return f
  def full_fsync(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  monkeypatch.setattr(cache_lib, 'open', full_open, raising=False)
  if fail_at == 'fsync':
    monkeypatch.setattr(os, 'fsync', full_fsync)
  with pytest.raises(CorpusError) as error:
    _build(corpus, cache_dir)
  message = str(error.value)
  assert isinstance(error.value, JaxserError)
  assert '\n' not in message and len(message) < 300, message
  assert str(cache_dir) in message and 'No space left on device' in message
  assert sorted(p.name for p in cache_dir.iterdir()
                if p.name != fingerprint.HASHES_FILE) == [previous.folder.name]
  assert cache_lib.verify(previous.folder, previous.ids, PARAMS) is None
  monkeypatch.undo()  # space again: the build completes
  assert len(_build(corpus, cache_dir)) == 5


# ----------------------------------------------------------------------------
# Finding 5: the same audio under two ids.


def test_duplicate_audio_is_left_out_and_conflicts_drop_every_copy(corpus,
                                                                   tmp_path):
  folder = pathlib.Path(corpus[0].path).parent
  shutil.copy(corpus[0].path, folder / 'a_copy.wav')
  shutil.copy(corpus[1].path, folder / 'b_copy.wav')
  same = dataclasses.replace(corpus[0], id='f', path=str(folder / 'a_copy.wav'))
  other = dataclasses.replace(corpus[1], id='g', path=str(folder / 'b_copy.wav'),
                              label='sad')  # b is angry
  cache = _build(corpus + [same, other], tmp_path / 'cache')
  assert cache.ids == ('a', 'c', 'd', 'e')
  kinds = {pathlib.Path(i.path).name: i.kind for i in cache.skipped}
  assert kinds == {'a_copy.wav': 'duplicate audio',
                   'b.wav': 'duplicate audio with conflicting labels',
                   'b_copy.wav': 'duplicate audio with conflicting labels'}
  detail = {pathlib.Path(i.path).name: i.detail for i in cache.skipped}
  assert corpus[0].path in detail['a_copy.wav']
  assert 'b_copy.wav (sad)' in detail['b.wav']
  with pytest.raises(CorpusError, match='duplicate audio'):
    _build(corpus + [same, other], tmp_path / 'cache', strict=True)


# ----------------------------------------------------------------------------
# Finding 6: the fault kind comes from the error, not from its words.


def test_fault_kind_is_the_errors_not_guessed_from_its_text(corpus, tmp_path):
  folder = pathlib.Path(corpus[0].path).parent
  misleading = folder / 'empty audio that does not exist.wav'
  misleading.write_bytes(b'not audio')
  cut = write_wav(folder / 'cut.wav', 1.0, seed=7)
  cut.write_bytes(cut.read_bytes()[:44 + 2 * 4000])
  extra = [dataclasses.replace(corpus[0], id='x', path=str(misleading)),
           dataclasses.replace(corpus[0], id='y', path=str(cut))]
  cache = _build(corpus + extra, tmp_path / 'cache')
  kinds = {pathlib.Path(i.path).name: i.kind for i in cache.skipped}
  assert kinds == {misleading.name: 'unreadable audio',
                   'cut.wav': 'truncated audio'}


# ----------------------------------------------------------------------------
# Bounded memory: a chunk holds only the samples the kept frames read.


def test_long_audio_is_cropped_as_soon_as_it_is_decoded(corpus, tmp_path,
                                                        monkeypatch):
  params = features.FeatureParams(max_frames=50)
  long_path = write_wav(tmp_path / 'corpus' / 'long.wav', 3.0, seed=5)
  utterances = corpus + [dataclasses.replace(corpus[0], id='long',
                                             path=str(long_path))]
  seen = []
  real_extract = features.extract_numpy
  monkeypatch.setattr(features, 'extract_numpy', lambda w, *a, **k: (
      seen.extend(len(x) for x in w) or real_extract(w, *a, **k)))
  cache = _build(utterances, tmp_path / 'cache', params)
  margin = -(-(params.n_fft // 2) // params.hop_length)
  assert max(seen) <= (params.max_frames + 2 * margin) * params.hop_length
  np.testing.assert_array_equal(cache[5], real_extract(
      [audio.load(long_path)], params, batch_size=BATCH)[0])


def test_leftovers_of_dead_runs_are_removed(corpus, tmp_path):
  first = _build(corpus, tmp_path / 'cache')
  shutil.rmtree(first.folder)
  dead = 4194303  # Linux's highest pid: not running, in all likelihood
  for suffix in (f'{dead}-0a1b2c3d', str(dead), f'{os.getpid()}-ffffffff'):
    (tmp_path / 'cache' / f'.tmp-{first.folder.name}-{suffix}').mkdir()
  again = _build(corpus, tmp_path / 'cache')
  left = sorted(p.name for p in (tmp_path / 'cache').iterdir()
                if p.name != fingerprint.HASHES_FILE)
  assert left == [f'.tmp-{first.folder.name}-{os.getpid()}-ffffffff',  # alive
                  again.folder.name]
