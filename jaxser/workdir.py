"""A run's folder: checked, locked, its metrics log, and discarded on demand.

`preflight` runs before any corpus work: it validates the config, proves the
workdir and the feature cache writable, and locks the workdir. The
`MetricsWriter` keeps `metrics.jsonl` (deterministic: no timings) and the
TensorBoard events; `discard_run` deletes what a run left (`--start_over`).
Files a driver reads back are written by `jaxser.fileio`.
"""

import contextlib
import fcntl
import json
import logging as std_logging
import os
import shutil
import sys
import tempfile
import threading
import weakref

from absl import logging
import ml_collections

from jaxser import checkpoint as checkpoint_lib
from jaxser import config_lib
from jaxser import fileio
from jaxser import parallel
from jaxser.errors import JaxserError

__all__ = ['MetricsWriter', 'RUN_OUTPUTS', 'RunLog', 'WorkdirLock', 'discard_run',
           'ensure_writable', 'log_file', 'preflight', 'saved_step']


def preflight(config: ml_collections.ConfigDict, workdir: str) -> 'WorkdirLock':
  """The checks before any corpus or feature work; returns the workdir's lock.

  Validates the config, creates the workdir and the feature cache folder and
  proves both writable by writing a file in each, then locks the workdir.

  Raises:
    ConfigError: a bad config field.
    JaxserError: a folder that cannot be created or written, or a workdir
      that another run holds.
  """
  config_lib.validate(config)
  ensure_writable(workdir, 'the workdir (--workdir)')
  ensure_writable(config_lib.cache_dir(config, workdir),
                  'the feature cache (config.cache_dir)')
  if not parallel.is_chief():  # in a multi-process run, process 0 holds it
    return _NoLock()
  return WorkdirLock(workdir)


class _NoLock:
  """What processes other than 0 of a multi-process run hold."""

  def release(self):
    pass


def ensure_writable(folder: str, what: str) -> None:
  """Creates `folder` if needed and writes (then removes) a file there.

  A real write, not `os.access`: the mode bits say nothing for root, nor for
  read-only or immutable file systems.

  Raises:
    JaxserError: naming `what`, the folder and the system's reason.
  """
  try:
    os.makedirs(folder, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix='.jaxser-write-test-'):
      pass
  except OSError as e:
    raise JaxserError(f'{folder}: cannot create or write {what} '
                      f'({e.strerror or e}); choose a writable folder') from e


class WorkdirLock:
  """An exclusive lock on a workdir: a second run there is refused.

  The lock is a `flock` on the workdir folder itself, so deleting any file
  in it does not let a second run in, and it dies with its process, so a
  killed run never leaves a stale lock. The holder's pid is written to
  `<workdir>/.lock` (opened without following links: a planted symlink is
  refused, never truncated) for the message a refused run prints.
  """

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = os.path.join(workdir, '.lock')
    try:
      self._fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
      raise JaxserError(f'{workdir}: cannot open the workdir ({fileio.reason(e)})') from e
    try:
      fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
      os.close(self._fd)
      self._fd = None
      raise JaxserError(f'{workdir}: another jaxser run (pid {self._holder()}) is '
                        'using this workdir (locked); wait for it or choose '
                        'another --workdir') from e
    try:
      self._write_pid()
    except OSError as e:
      self.release()
      raise JaxserError(f'{self.path}: cannot write the lock file '
                        f'({fileio.reason(e)}); remove it if it is a link') from e

  def _write_pid(self):
    fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
      os.ftruncate(fd, 0)
      os.write(fd, f'{os.getpid()}\n'.encode())
    finally:
      os.close(fd)

  def _holder(self) -> str:
    try:
      fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
      return '?'
    try:
      return os.read(fd, 32).decode(errors='replace').strip() or '?'
    finally:
      os.close(fd)

  def release(self):
    if self._fd is not None:  # releasing twice is harmless
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None


# What a run writes in its workdir (all of it goes with --start_over).
RUN_OUTPUTS = (checkpoint_lib.LATEST, checkpoint_lib.BEST, checkpoint_lib.DAMAGED,
               'tensorboard', 'metrics.jsonl', 'results.json', 'log.txt', 'confusion.png',
               'embeddings_pca.png', 'curves.png',
               # jaxser.ablate's embeddings of the run's splits
               'embeddings_train.npz', 'embeddings_dev.npz', 'embeddings_test.npz',
               'augment')  # jaxser.augment's outputs


def discard_run(workdir: str) -> None:
  """Deletes what a run left in `workdir` (its `RUN_OUTPUTS`)."""
  for name in RUN_OUTPUTS:
    path = os.path.join(workdir, name)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    elif os.path.lexists(path):
      os.remove(path)
  logging.info('%s: discarded the earlier run (--start_over)', workdir)


def saved_step(workdir: str) -> int | None:
  """The newest complete latest checkpoint on disk, for messages."""
  folder = os.path.join(workdir, checkpoint_lib.LATEST)
  steps = [int(n) for n in os.listdir(folder) if n.isdigit()] if os.path.isdir(folder) else []
  return max(steps, default=None)


class MetricsWriter:
  """metrics.jsonl (deterministic: no timings) and TensorBoard events.

  A context manager: leaving it closes both. A write or close that fails (a
  full disk) raises OSError naming the file; while another error is already
  ending the run, a failing close is only logged, so it never hides that
  error.
  """

  def __init__(self, workdir: str, resume_step: int):
    self.enabled = parallel.is_chief()  # one process writes
    if not self.enabled:
      return
    self.path = os.path.join(workdir, 'metrics.jsonl')
    kept = _lines_to_keep(self.path, resume_step) if os.path.exists(self.path) else []
    fileio.atomic_write(self.path, ''.join(kept))
    self._file = open(self.path, 'a')
    # A resumed run's events from the resumed step on are dropped by
    # TensorBoard (purge_step), so its curves have no duplicate points.
    self._tb_dir = os.path.join(workdir, 'tensorboard')
    threads = set(threading.enumerate())
    self._tb = _summary_writer(self._tb_dir,
                               purge_step=resume_step + 1 if resume_step else None)
    # The writer's events are written by its own thread: a failed write
    # there is kept (not printed) and raised here at the next write or close.
    self._tb_threads = set(threading.enumerate()) - threads
    _OWNED_THREADS.update(self._tb_threads)
    _keep_background_write_errors()

  def write(self, step: int, split: str, values: dict) -> None:
    if not self.enabled:
      return
    self._raise_background_error()  # before queueing events for a dead thread
    record = {'step': int(step), 'split': split, **values}
    with _naming(self.path):
      self._file.write(json.dumps(record) + '\n')
      self._file.flush()
    for key, value in values.items():
      if isinstance(value, (int, float)):
        self._tb.add_scalar(f'{split}/{key}', value, step)
    self._raise_background_error()

  def hparams(self, config, metrics: dict) -> None:
    """The run's config fields and final metrics, for TensorBoard's HPARAMS tab."""
    if not self.enabled:
      return
    flat = {}
    for key, value in json.loads(config.to_json_best_effort()).items():
      items = value.items() if isinstance(value, dict) else [(None, value)]
      for sub, v in items:
        name = key if sub is None else f'{key}.{sub}'
        flat[name] = v if isinstance(v, (bool, int, float, str)) else json.dumps(v)
    with _naming(self._tb_dir):  # a writer of its own, closed before it returns
      self._tb.add_hparams(flat, {k: float(v) for k, v in metrics.items()},
                           name='hparams')
    self._raise_background_error(unowned_too=True)

  def close(self):
    if self.enabled and not self._file.closed:
      try:
        with _naming(self._tb_dir):
          self._tb.close()
        self._raise_background_error()
      finally:
        with _naming(self.path):
          self._file.close()

  def _raise_background_error(self, unowned_too: bool = False):
    """Raises a failed write of this writer's threads (`unowned_too`: or of a
    thread no writer owns, one that lived inside the last call)."""
    for thread in list(_WRITE_ERRORS):
      if thread in self._tb_threads or (unowned_too and thread not in _OWNED_THREADS):
        error = _WRITE_ERRORS.pop(thread)
        raise OSError(error.errno, error.strerror, self._tb_dir) from error

  def __enter__(self):
    return self

  def __exit__(self, error_type, error, traceback):
    try:
      self.close()
    except OSError as e:
      if error_type is None:
        raise
      logging.warning('%s: %s (while stopping)', e.filename, fileio.reason(e))


@contextlib.contextmanager
def _naming(path: str):
  """Names `path` in an OSError that names no file (a write to an open one)."""
  try:
    yield
  except OSError as e:
    raise OSError(e.errno, e.strerror, e.filename or path) from e


# Write errors of background writer threads (TensorBoard's), by thread.
_WRITE_ERRORS: dict[threading.Thread, OSError] = {}
_OWNED_THREADS: 'weakref.WeakSet[threading.Thread]' = weakref.WeakSet()


def _keep_background_write_errors() -> None:
  """Installs a `threading.excepthook` that keeps writer threads' OSErrors.

  Without it a full disk under the TensorBoard folder prints a traceback
  from the writer's thread and loses events silently; with it the
  `MetricsWriter` that owns the thread raises the error as its own. Other
  threads' exceptions go to the hook installed before.
  """
  if getattr(threading.excepthook, 'keeps_write_errors', False):
    return
  previous = threading.excepthook

  def hook(args):
    if (isinstance(args.exc_value, OSError)
        and type(args.thread).__module__.startswith('tensorboardX')):
      _WRITE_ERRORS[args.thread] = args.exc_value
    else:
      previous(args)
  hook.keeps_write_errors = True
  threading.excepthook = hook


def _summary_writer(logdir: str, purge_step: int | None = None):
  """A tensorboardX writer, imported without PyTorch.

  tensorboardX imports torch whenever it is installed, only to accept torch
  tensors (jaxser logs floats); that import costs seconds at every start,
  which matters to a run resumed after each pre-emption.
  """
  blocked = 'torch' not in sys.modules
  if blocked:
    sys.modules['torch'] = None  # `import torch` raises ImportError
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  finally:
    if blocked:
      del sys.modules['torch']
  return SummaryWriter(logdir, purge_step=purge_step)


class RunLog(std_logging.Handler):
  """The log of a run, for `<workdir>/log.txt` (appended to on resume).

  Records are held in memory until `start()`, which the trainer calls once
  the workdir is known to hold this run (its checkpoint's identity checked):
  a refused command leaves the workdir exactly as it was, log included.
  """

  def __init__(self, path: str):
    super().__init__()
    self.path, self._held, self._file = path, [], None
    self.setFormatter(logging.PythonFormatter())

  def emit(self, record):
    text = self.format(record) + '\n'
    if self._file is None:
      self._held.append(text)
    else:
      self._file.write(text)
      self._file.flush()

  def start(self) -> None:
    if self._file is None and parallel.is_chief():
      self._file = open(self.path, 'a')
      self._file.writelines(self._held)
      self._file.flush()
    self._held = []

  def close(self):
    if self._file is not None:
      self._file.close()
    super().close()


@contextlib.contextmanager
def log_file(workdir: str):
  """Collects the log for `<workdir>/log.txt`; yields the `RunLog` to start."""
  handler = RunLog(os.path.join(workdir, 'log.txt'))
  root = std_logging.getLogger()
  root.addHandler(handler)
  try:
    yield handler
  finally:
    root.removeHandler(handler)
    handler.close()


def _lines_to_keep(path: str, resume_step: int) -> list[str]:
  """The metrics lines a run resumed at `resume_step` keeps.

  A killed run may have written lines after its last checkpoint, the test
  line of a final report it did not finish, or half a line; they are all
  dropped (the resumed run writes them again), so a resumed run's file
  equals an uninterrupted run's.
  """
  kept = []
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        logging.warning('%s: dropping a torn line left by a killed run', path)
        continue
      if record['step'] <= resume_step and record['split'] != 'test':
        kept.append(line)
  return kept
