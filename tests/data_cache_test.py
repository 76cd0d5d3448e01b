"""The feature cache: built once, reopened, invalidated, random access."""

import os
import pathlib
import pickle

import numpy as np
import pytest

from jaxser import audio
from jaxser import data
from jaxser import features
from jaxser.data import cache as cache_lib
from jaxser.errors import CorpusError
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
    rows.append(f'{name}.wav,{["neutral", "angry", "happy", "sad"][k % 4]}')
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
