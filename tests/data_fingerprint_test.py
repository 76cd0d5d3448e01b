"""The corpus fingerprint: the files' content and the records, not the paths.

Finding 2 of the reliability review: the feature cache's key covers the
files' content, not only their stat.
"""

import dataclasses
import json
import os
import shutil

import numpy as np

from jaxser import audio
from jaxser import features
from jaxser.data import fingerprint
import data_cache_test  # pylint: disable=g-bad-import-order
from data_readers_test import write_wav  # pylint: disable=g-bad-import-order

corpus = data_cache_test.corpus  # the fixture: five clips in a manifest
_build = data_cache_test._build
_warnings = data_cache_test._warnings


def _features(path, params=data_cache_test.PARAMS):
  return features.extract_numpy([audio.load(path)], params,
                                batch_size=data_cache_test.BATCH)[0]


def test_edit_keeping_size_and_mtime_gives_new_key_and_features(
    corpus, tmp_path, monkeypatch):
  monkeypatch.setattr(fingerprint, '_RACY_NS', 0)  # remember every hash at once
  base = _build(corpus, tmp_path / 'cache')
  old = np.array(base[1])
  path = corpus[1].path
  before = os.stat(path)
  write_wav(path, 0.8, seed=123)  # the same length, other samples
  os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
  after = os.stat(path)
  assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
  changed = _build(corpus, tmp_path / 'cache')
  assert changed.folder != base.folder
  np.testing.assert_array_equal(changed[1], _features(path))
  assert not np.allclose(changed[1], old)


def test_fingerprint_covers_content_and_labels_not_paths(corpus, tmp_path,
                                                         monkeypatch):
  monkeypatch.setattr(fingerprint, '_RACY_NS', 0)
  cache_dir = tmp_path / 'cache'
  print_ = fingerprint.corpus_fingerprint(corpus, cache_dir)
  memo = json.loads((cache_dir / fingerprint.HASHES_FILE).read_text())
  assert sorted(memo) == sorted(u.path for u in corpus)
  hashed = []
  real_hash = fingerprint._hash_file
  monkeypatch.setattr(fingerprint, '_hash_file',
                      lambda p: hashed.append(p) or real_hash(p))
  assert fingerprint.corpus_fingerprint(corpus, cache_dir) == print_
  assert not hashed  # unchanged files are not read again
  shutil.copytree(tmp_path / 'corpus', tmp_path / 'moved')
  moved = [dataclasses.replace(u, path=u.path.replace('/corpus/', '/moved/'))
           for u in corpus]
  assert fingerprint.corpus_fingerprint(moved, cache_dir) == print_
  assert len(hashed) == 5  # new paths: read once
  relabelled = [dataclasses.replace(corpus[0], label='sad')] + corpus[1:]
  assert fingerprint.corpus_fingerprint(relabelled, cache_dir) != print_


def test_files_changed_just_now_are_hashed_again(corpus, tmp_path, monkeypatch):
  # Within a clock tick an edit need not move the ctime: not remembered yet.
  fingerprint.corpus_fingerprint(corpus, tmp_path / 'cache')
  assert not (tmp_path / 'cache' / fingerprint.HASHES_FILE).exists()
  (tmp_path / 'cache').mkdir()
  (tmp_path / 'cache' / fingerprint.HASHES_FILE).write_text('garbage')
  warnings = _warnings(monkeypatch)
  fingerprint.corpus_fingerprint(corpus, tmp_path / 'cache')
  assert 'hashing every file again' in warnings[0]
