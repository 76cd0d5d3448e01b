"""Writing files and folders: whole or not at all, never through a link.

Every result file that a resumable driver reads back (`results.json`,
`summary.json`, run records, metrics rewritten on resume, reports) is written
by `atomic_write`: to a fresh temporary file beside it (a unique name opened
with `O_EXCL`, so a planted symlink is never followed), flushed to disk, then
renamed over the target. A run killed or out of disk space leaves the previous
file (or none) and no temporary file, never half of one. A folder written at
once (a feature cache, the demo corpus) is filled under a temporary name and
renamed into place by `atomic_folder`.
"""

import contextlib
import json
import os
import pathlib
import secrets
import shutil
import tempfile
from typing import Callable, Iterator

from absl import logging

from jaxser.errors import JaxserError

__all__ = ['atomic_folder', 'atomic_write', 'fsync_folder', 'reason',
           'write_json']


def reason(error: BaseException, limit: int = 200) -> str:
  """A short, one-line reason for an I/O error (for `jaxser:` messages).

  The system's words (`No space left on device`) for an OSError; otherwise
  the first line of the error's text, cut to `limit` characters (some
  libraries put a whole storage spec in their messages).
  """
  if isinstance(error, OSError) and error.strerror:
    return error.strerror
  if 'No space left on device' in str(error):  # tensorstore's RESOURCE_EXHAUSTED
    return 'No space left on device'
  text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  return text if len(text) <= limit else text[:limit - 3] + '...'


def atomic_write(path: str, data: str | bytes) -> None:
  """Writes `data` to `path` atomically and durably.

  Raises:
    JaxserError: the file cannot be written (a full disk, a read-only
      folder), naming it; nothing is left behind.
  """
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = None, None
  try:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{os.path.basename(path)}.',
                               suffix='.tmp')
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 is for secrets
    with os.fdopen(fd, 'wb') as f:
      fd = None  # closed by the file object from here on
      f.write(data.encode() if isinstance(data, str) else data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
    tmp = None
    fsync_folder(folder)
  except OSError as e:
    raise JaxserError(f'{path}: cannot write ({reason(e)})') from e
  finally:
    if fd is not None:
      os.close(fd)
    if tmp is not None and os.path.exists(tmp):
      os.remove(tmp)


def _umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def write_json(path: str, value) -> None:
  """`value` as JSON to `path`, by `atomic_write`.

  Raises:
    JaxserError: as `atomic_write`, or `value` holds a NaN or Inf (which
      JSON cannot hold, and which no result should be).
  """
  try:
    text = json.dumps(value, indent=1, allow_nan=False)
  except ValueError as e:
    raise JaxserError(f'{path}: not written, it would hold a non-finite '
                      f'number ({e})') from e
  atomic_write(path, text)


def fsync_folder(folder: str) -> None:
  """Makes a rename in `folder` durable (where the file system allows)."""
  fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
  try:
    os.fsync(fd)
  except OSError:  # some file systems cannot sync a folder; the rename stands
    pass
  finally:
    os.close(fd)


@contextlib.contextmanager
def atomic_folder(final, is_complete: Callable[[pathlib.Path], bool]
                  ) -> Iterator[pathlib.Path]:
  """A temporary folder, renamed to `final` when the `with` block succeeds.

  A process killed mid-way leaves only `.tmp-<name>-<pid>-<random>`, never
  `final`; such leftovers of processes no longer running are deleted on the
  next call, as is a `final` that `is_complete` rejects. If another process
  completes `final` first, its folder is kept and ours discarded. Every file
  is flushed to disk before the rename, and the rename itself after it, so a
  machine that crashes leaves the whole folder or none (not a folder of
  files the disk never received: zeros, or nothing).

  Args:
    final: the folder to create.
    is_complete: tells a finished folder from anything else.

  Yields:
    The temporary folder to fill.
  """
  final = pathlib.Path(final)
  final.parent.mkdir(parents=True, exist_ok=True)
  prefix = f'.tmp-{final.name}-'
  for leftover in final.parent.glob(f'{prefix}*'):
    pid = leftover.name[len(prefix):].split('-')[0]
    if pid.isdigit() and not _process_alive(int(pid)):
      logging.info('removing %s, left by an interrupted run', leftover)
      shutil.rmtree(leftover, ignore_errors=True)
  if final.exists() and not is_complete(final):
    logging.warning('replacing the incomplete folder %s', final)
    shutil.rmtree(final)
  # Unique, so two threads or a reused pid never share a temporary folder.
  tmp = final.with_name(f'{prefix}{os.getpid()}-{secrets.token_hex(4)}')
  tmp.mkdir()
  try:
    yield tmp
    _sync_tree(tmp)
    try:
      os.rename(tmp, final)
    except OSError:
      if not is_complete(final):  # anything but a racing run that finished
        raise
    else:
      fsync_folder(final.parent)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def _sync_tree(folder: pathlib.Path) -> None:
  """Flushes every file under `folder`, then the folders, to disk."""
  for root, _, names in os.walk(folder):
    for name in names:
      fd = os.open(os.path.join(root, name), os.O_RDONLY)
      try:
        os.fsync(fd)
      finally:
        os.close(fd)
    fsync_folder(pathlib.Path(root))


def _process_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # alive, another user's
    return True
  return True
