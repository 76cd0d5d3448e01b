"""What a corpus is, as one hash: its records and its audio files' bytes.

`corpus_fingerprint` identifies the data a run trains on: the feature cache's
folder key and a checkpoint's run identity both hold it. It hashes, per
utterance in id order, the id, label, speaker, gender, session, improvised,
corpus and the BLAKE2b hash of the file's content, but not the path: a corpus
moved to another folder keeps its fingerprint, while an edited file changes
it even if its size and modification time were set back.

Hashing a large corpus at every run start would be slow (IEMOCAP is 1.5 GB),
so `<cache_dir>/content_hashes.json` remembers each file's hash with its
size, mtime, ctime and inode, and a hash is reused only while all four are
unchanged: ctime cannot be set back by a user, so an edit that restores the
mtime is still seen. The same hashes find repeated audio (`duplicate_audio`).
"""

import collections
import hashlib
import json
import os
import pathlib
import stat
import time
from typing import Iterable, Sequence

from absl import logging

from jaxser import fileio
from jaxser.data import records
from jaxser.errors import JaxserError

__all__ = ['HASHES_FILE', 'content_hashes', 'corpus_fingerprint', 'duplicate_audio',
           'from_content_hashes']

HASHES_FILE = 'content_hashes.json'  # in cache_dir: the memo of file hashes
_HASH_BLOCK = 1 << 20  # bytes read at a time when hashing a file
# A file whose ctime is this recent may change again within the same clock
# tick without its ctime moving (git's "racily clean" files): its hash is
# used but not remembered.
_RACY_NS = 2_000_000_000


def corpus_fingerprint(utterances: Sequence[records.Utterance], cache_dir) -> str:
  """A hash of what the utterances are: their records and their files' bytes.

  Covers, per utterance in id order, the id, label, speaker, gender,
  session, improvised, corpus and a hash of the audio file's content (None
  for a file that cannot be read), but not the path: a corpus moved to
  another folder keeps its fingerprint, while an edited file changes it even
  if its size and modification time were set back. It identifies the data a
  run trained on (feature cache keys, checkpoints' run identity).

  Args:
    utterances: the corpus.
    cache_dir: where the memo of file hashes lives (`HASHES_FILE`); files
      whose size, mtime, ctime and inode are as remembered are not read.

  Returns:
    A 64-digit hexadecimal SHA-256.
  """
  hashes = content_hashes([u.path for u in utterances], cache_dir)
  return from_content_hashes(utterances, hashes)


def content_hashes(paths: Iterable[str], cache_dir) -> dict[str, str | None]:
  """Each file's BLAKE2b content hash (None if unreadable), memoised by stat.

  Args:
    paths: the files.
    cache_dir: the folder of the memo (`HASHES_FILE`, written atomically).

  Returns:
    `{path: hex digest or None}` for every path given.
  """
  memo_path = pathlib.Path(cache_dir) / HASHES_FILE
  memo = _read_memo(memo_path)
  hashes, changed = {}, False
  for path in sorted(set(paths)):
    key = os.path.abspath(path)
    stamp = _stamp(path)
    entry = memo.get(key)
    if stamp is not None and entry is not None and entry[:4] == stamp:
      hashes[path] = entry[4]
      continue
    hashes[path] = None if stamp is None else _hash_file(path)
    if hashes[path] is not None and time.time_ns() - stamp[2] > _RACY_NS:
      memo[key] = stamp + [hashes[path]]
      changed = True
  if changed:
    _write_memo(memo_path, memo)
  return hashes


def from_content_hashes(utterances: Sequence[records.Utterance],
                        hashes: dict[str, str | None]) -> str:
  """`corpus_fingerprint` from the files' `content_hashes`."""
  digest = hashlib.sha256()
  for utt in sorted(utterances, key=lambda u: u.id):
    fields = [utt.id, utt.label, utt.speaker, utt.gender, utt.session,
              utt.improvised, utt.corpus, hashes[utt.path]]
    if utt.split is not None:  # (corpora without splits keep their fingerprints)
      fields.append(utt.split)
    digest.update(json.dumps(fields).encode() + b'\n')
  return digest.hexdigest()


def _stamp(path: str) -> list[int] | None:
  """`[size, mtime_ns, ctime_ns, inode]`, or None for no regular file."""
  try:
    info = os.stat(path)
  except OSError:
    return None
  if not stat.S_ISREG(info.st_mode):  # a folder, or a pipe that never ends
    return None
  return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


def _hash_file(path: str) -> str | None:
  digest = hashlib.blake2b(digest_size=16)
  try:
    with open(path, 'rb') as f:
      while block := f.read(_HASH_BLOCK):
        digest.update(block)
  except OSError:  # reported when the file is decoded
    return None
  return digest.hexdigest()


def _read_memo(path: pathlib.Path) -> dict:
  """The remembered `{abspath: [size, mtime, ctime, inode, hash]}`, or {}."""
  try:
    memo = json.loads(path.read_text())
  except FileNotFoundError:
    return {}
  except (OSError, ValueError) as e:
    logging.warning('%s is unreadable (%s): hashing every file again', path, e)
    return {}
  if not isinstance(memo, dict):
    return {}
  return {k: v for k, v in memo.items() if isinstance(v, list) and len(v) == 5}


def _write_memo(path: pathlib.Path, memo: dict) -> None:
  """Writes the memo atomically, without files that are gone."""
  memo = {k: v for k, v in memo.items() if os.path.exists(k)}
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    fileio.atomic_write(str(path), json.dumps(memo))
  except (OSError, JaxserError) as e:  # only a speed-up: hashed again next time
    logging.warning('the content hashes were not kept: %s', e)


def duplicate_audio(utterances: Sequence[records.Utterance],
                    hashes: dict[str, str | None]) -> dict[str, records.Issue]:
  """The utterances to leave out because their audio repeats another's.

  Args:
    utterances: the corpus.
    hashes: `content_hashes` of their paths.

  Returns:
    `{id: Issue}`: every copy but the first (by id) when the copies agree on
    the label; every copy when they do not.
  """
  groups = collections.defaultdict(list)
  for utt in sorted(utterances, key=lambda u: u.id):
    if hashes[utt.path] is not None:
      groups[hashes[utt.path]].append(utt)
  issues = {}
  for group in groups.values():
    if len({u.label for u in group}) == 1:
      for utt in group[1:]:
        issues[utt.id] = records.Issue(
            'duplicate audio', utt.path,
            f'the same audio as {group[0].path} (id {group[0].id!r})')
    elif len(group) > 1:
      for utt in group:
        others = ', '.join(f'{o.path} ({o.label})' for o in group if o is not utt)
        issues[utt.id] = records.Issue(
            'duplicate audio with conflicting labels', utt.path,
            f'labelled {utt.label}; the same audio as {_shorten(others)}')
  return issues


def _shorten(text: str, limit: int = 300) -> str:
  return text if len(text) <= limit else text[:limit - 3] + '...'
