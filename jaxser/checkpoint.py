"""Checkpoints on orbax: the latest state for resuming, the best by dev UA.

The only module that knows orbax. A workdir holds

  checkpoints/<step>/   the latest training states (resuming)
  best/<step>/          the state with the best dev UA (reporting, predict)

and each checkpoint has two items: `state` (the TrainState pytree: step,
params, optimizer state, centres, RNG key) and `meta` (a `RunRecord` as
JSON: the config, the class names, the feature parameters, the
standardisation statistics, the run identity, the input iterator's position,
the selection record), so one checkpoint is enough to resume training or to
predict.

orbax writes each checkpoint to a temporary folder
(`<step>.orbax-checkpoint-tmp*`) and renames it when complete, so a run
killed mid-save leaves no checkpoint that would be restored; `latest_step`
only sees finished ones, and the next training run deletes the leftover.
Readers (predict) open the managers read-only: they create nothing and
never delete a temporary folder that a running training job is filling.
"""

import contextlib
import os
import shutil
import sys
import threading
import time
from typing import Any, Callable

from absl import logging
import jax
import orbax.checkpoint as ocp

from jaxser import fileio
from jaxser.errors import CheckpointError
from jaxser.run_record import RunRecord

__all__ = ['BEST', 'Checkpoints', 'DAMAGED', 'LATEST', 'TMP_SUFFIX', 'abstract']

LATEST = 'checkpoints'
BEST = 'best'
DAMAGED = 'damaged'  # damaged checkpoints a training run passed over
TMP_SUFFIX = '.orbax-checkpoint-tmp'  # orbax's unfinished checkpoint folders


@contextlib.contextmanager
def _quiet(level=logging.WARNING):
  """orbax logs every step of its work at INFO; keep the run's log readable."""
  verbosity = logging.get_verbosity()
  logging.set_verbosity(level)
  try:
    yield
  finally:
    logging.set_verbosity(verbosity)


class Checkpoints:
  """One orbax manager per kind ('checkpoints' and 'best') in a workdir."""

  def __init__(self, workdir: str, *, keep: int = 2, read_only: bool = False):
    """Opens (for training: creates) the managers of `workdir`.

    Args:
      workdir: the run's folder.
      keep: latest checkpoints kept.
      read_only: open existing checkpoints for restoring only (predict).

    Raises:
      CheckpointError: `read_only` and `workdir` holds no checkpoint folder.
    """
    self.workdir = os.path.abspath(workdir)
    self._read_only = read_only
    _drop_closed_loop_errors()
    if read_only and not any(os.path.isdir(os.path.join(self.workdir, kind))
                             for kind in (LATEST, BEST)):
      raise CheckpointError(f'{self.workdir}: no checkpoints/ or best/ folder: '
                            'not a trained workdir')
    self._managers = {}
    # orbax warns that a read-only manager is read-only.
    with _quiet(logging.ERROR if read_only else logging.WARNING):
      self._open(keep, read_only)

  def _open(self, keep, read_only):
    for kind, max_to_keep in ((LATEST, keep), (BEST, 1)):
      folder = os.path.join(self.workdir, kind)
      if not read_only:
        _remove_unfinished_saves(folder)
      options = ocp.CheckpointManagerOptions(
          max_to_keep=None if read_only else max_to_keep,
          save_interval_steps=0 if read_only else 1,
          create=not read_only, read_only=read_only,
          enable_async_checkpointing=False)
      self._managers[kind] = ocp.CheckpointManager(
          folder, options=options,
          item_handlers={'state': ocp.StandardCheckpointHandler(),
                         'meta': ocp.JsonCheckpointHandler()})

  def latest_step(self, kind: str = LATEST) -> int | None:
    return self._managers[kind].latest_step()

  def save(self, kind: str, step: int, state: Any, record: RunRecord) -> None:
    """Saves `state` and `record` as step `step` of `kind`, and waits for it.

    Raises:
      CheckpointError: the save failed (a full disk, a folder that became
        unwritable); the checkpoints saved before are left as they were.
    """
    manager = self._managers[kind]
    # A failed save's own threads log their tracebacks as errors; the error
    # that reaches us says the same in one line (below).
    with _quiet(logging.FATAL):
      try:
        if step in manager.all_steps():  # a resumed run redoing a step
          manager.delete(step)
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            meta=ocp.args.JsonSave(record.to_json())),
                     force=True)
        manager.wait_until_finished()
        error = None
      except Exception as e:  # pylint: disable=broad-except
        # A full disk reaches us as OSError, or from tensorstore as ValueError
        # (RESOURCE_EXHAUSTED); either way the earlier checkpoints are intact.
        _join_save_threads()
        error = e
    if error is not None:
      previous = [s for s in manager.all_steps() if s != step]
      kept = (f'the checkpoint of step {max(previous)} there is intact'
              if previous else 'no earlier checkpoint was saved there')
      latest = self.latest_step(LATEST)
      if kind != LATEST and latest is not None:
        kept += f'; the latest checkpoint (step {latest}) is intact'
      raise CheckpointError(f'{manager.directory}: saving step {step} failed '
                            f'({fileio.reason(error)}); {kept}') from error
    logging.info('saved the %s checkpoint at step %d',
                 'latest' if kind == LATEST else kind, step)

  def restore_record(self, kind: str = BEST, step: int | None = None) -> RunRecord:
    """The record of a checkpoint (config, classes, standardiser...)."""
    manager, step = self._manager_step(kind, step, items=('meta',))
    try:
      with _quiet():
        meta = manager.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))['meta']
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise CheckpointError(f'{manager.directory}/{step}: incomplete or '
                            f'unreadable checkpoint ({fileio.reason(e)})') from e
    return RunRecord.from_json(meta, f'{manager.directory}/{step}')

  def restore(self, kind: str, abstract_state: Any,
              step: int | None = None) -> tuple[Any, dict]:
    """Restores `(state, record)`; `abstract_state` gives the tree and shapes.

    Raises:
      CheckpointError: there is no checkpoint, it is incomplete (files
        missing), or its arrays do not fit the shapes of `abstract_state`
        (another model or class set).
    """
    manager, step = self._manager_step(kind, step)
    _check_shapes(manager, step, abstract_state)
    try:
      with _quiet():
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            meta=ocp.args.JsonRestore()))
    except OSError as e:
      raise CheckpointError(f'{manager.directory}/{step}: incomplete or '
                            f'unreadable checkpoint ({fileio.reason(e)})') from e
    except (ValueError, KeyError, TypeError) as e:
      raise CheckpointError(
          f'{manager.directory}/{step}: cannot be restored into this model: it '
          'is incomplete or damaged, or was made by another model or class set '
          f'({fileio.reason(e)})') from e
    return restored['state'], RunRecord.from_json(restored['meta'],
                                                  f'{manager.directory}/{step}')

  def restore_newest(self, kind: str, abstract_state: Any | Callable[[RunRecord], Any],
                     *, check: Callable[[RunRecord], None] | None = None
                     ) -> tuple[Any, RunRecord]:
    """The newest checkpoint of `kind` that restores whole: `(state, record)`.

    A damaged newest checkpoint (a stray or emptied step folder, a part
    missing, unreadable arrays) is passed over with a warning for the one
    before it. A training run (not read-only) moves the damaged folders
    aside to `<workdir>/damaged/`, so that they neither shadow the good
    ones nor count against the checkpoints kept. A reader retries when a
    step it listed was rotated away by a training run meanwhile.

    Args:
      kind: LATEST or BEST.
      abstract_state: the tree and shapes to restore into, or a function
        of a checkpoint's record that gives them.
      check: called with each candidate's record before any array is
        read; what it raises ends the search (e.g. another run's identity).

    Raises:
      CheckpointError: no checkpoint of `kind` restores (the newest one's
        error), or what `check` raised.
    """
    manager = self._managers[kind]
    for _ in range(3):  # a reader may lose a listed step to a rotation
      manager.reload()
      failures = []
      for step in sorted(manager.all_steps(), reverse=True):
        try:
          record = self.restore_record(kind, step)
          if check is not None:
            check(record)
          target = abstract_state(record) if callable(abstract_state) else abstract_state
          state, record = self.restore(kind, target, step)
        except CheckpointError as e:
          failures.append((step, e))
          continue
        self._set_aside(kind, failures, step)
        return state, record
      rotated = [s for s, _ in failures
                 if not os.path.isdir(os.path.join(manager.directory, str(s)))]
      if not (self._read_only and rotated):
        break
    if failures:
      raise failures[0][1]
    raise CheckpointError(f'{manager.directory}: no complete checkpoint (a run '
                          'killed before its first save leaves none)')

  def _set_aside(self, kind: str, failures, used: int) -> None:
    """Warns of the damaged checkpoints passed over; training moves them."""
    directory = self._managers[kind].directory
    for step, error in failures:
      if self._read_only:
        logging.warning('%s; using the checkpoint of step %d instead', error, used)
        continue
      target = os.path.join(self.workdir, DAMAGED, f'{kind}-{step}-{time.time_ns()}')
      os.makedirs(os.path.dirname(target), exist_ok=True)
      os.rename(os.path.join(directory, str(step)), target)
      logging.warning('%s; moved it to %s and resumed from the checkpoint of '
                      'step %d', error, target, used)
    if failures and not self._read_only:
      self._managers[kind].reload()

  def _manager_step(self, kind, step, items=('state', 'meta')):
    """The manager of `kind` and its step (the latest when None), checked."""
    manager = self._managers[kind]
    step = manager.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f'{manager.directory}: no complete checkpoint (a run '
                            'killed before its first save leaves none)')
    # orbax only finalises whole checkpoints; a part missing here was deleted
    # or lost afterwards.
    missing = [item for item in items
               if not os.path.isdir(os.path.join(manager.directory, str(step), item))]
    if missing:
      raise CheckpointError(f'{manager.directory}/{step}: incomplete checkpoint '
                            f'(no {", ".join(missing)} folder)')
    return manager, step

  def close(self):
    with _quiet():
      for manager in self._managers.values():
        manager.close()

  def __enter__(self):
    return self

  def __exit__(self, error_type, error, traceback):
    try:
      self.close()
    except Exception as e:  # pylint: disable=broad-except
      if error_type is None:
        raise CheckpointError(f'{self.workdir}: closing the checkpoints failed '
                              f'({fileio.reason(e)})') from e
      logging.warning('closing the checkpoints failed while stopping: %s',
                      fileio.reason(e))


def _drop_closed_loop_errors() -> None:
  """Keeps tensorstore's late callbacks of a failed save off the console.

  After a failed save, tensorstore completes the futures of the writes still
  in flight into orbax's event loop, which is closed by then; each prints
  `RuntimeError: Event loop is closed` through `sys.unraisablehook`. Those
  (and only those) are dropped: the save's failure is reported once, by
  `save`.
  """
  previous = sys.unraisablehook
  if getattr(previous, 'drops_closed_loop_errors', False):
    return

  def hook(unraisable):
    error = unraisable.exc_value
    if not (isinstance(error, RuntimeError) and str(error) == 'Event loop is closed'):
      previous(unraisable)

  hook.drops_closed_loop_errors = True
  sys.unraisablehook = hook


def _remove_unfinished_saves(folder: str) -> None:
  """Deletes the temporary folders of saves that a killed run left behind.

  Done here, synchronously, rather than by orbax's cleanup option, which
  runs in a thread that a run refused soon after (another model, say) would
  leave running at exit. Only a training run, which holds the workdir's
  lock, opens checkpoints for writing, so no save is in progress here.
  """
  if not os.path.isdir(folder):
    return
  for entry in os.scandir(folder):
    if TMP_SUFFIX in entry.name and entry.is_dir(follow_symlinks=False):
      logging.info('removing %s, a save that an interrupted run left unfinished',
                   entry.path)
      shutil.rmtree(entry.path)


def _check_shapes(manager, step: int, abstract_state: Any) -> None:
  """Refuses a checkpoint whose arrays have other paths or shapes, naming them.

  Checked from the checkpoint's metadata before any array is read.
  """
  try:
    with _quiet():
      saved = manager.item_metadata(step)['state']
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise CheckpointError(f'{manager.directory}/{step}: unreadable checkpoint '
                          f'metadata ({fileio.reason(e)})') from e
  have, want = _shapes(saved), _shapes(abstract_state)
  diffs = [f'{name}: saved {have.get(name, "nothing")}, this model '
           f'{want.get(name, "nothing")}' for name in sorted(set(have) | set(want))
           if have.get(name) != want.get(name)]
  if diffs:
    raise CheckpointError(
        f'{manager.directory}/{step}: cannot be restored into this model, its '
        f'arrays differ ({"; ".join(diffs[:3])}{"; ..." if len(diffs) > 3 else ""}); '
        'it was made by another model or class set')


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """`{'params/conv1/kernel': shape, ...}` for arrays or array metadata."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    # Dict keys, attribute names (dataclasses, NamedTuples) or list indices.
    parts = (getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k))) for k in path)
    out['/'.join(str(p) for p in parts)] = tuple(leaf.shape)
  return out


def _join_save_threads(timeout: float = 30.0) -> None:
  """Waits for the other threads of a failed save (array writes, metadata).

  A save fails as soon as one of its parts does; the others still run and,
  left alone, die with tracebacks when the interpreter exits.
  """
  for thread in threading.enumerate():
    if (thread is not threading.current_thread()
        and type(thread).__module__.startswith('orbax.')):
      try:
        thread.join(timeout)
      except Exception:  # pylint: disable=broad-except (the save's own errors, reported)
        pass


def abstract(tree: Any) -> Any:
  """Shapes, dtypes and placements of a pytree, the target of a restore.

  Leaves without a placement (`jax.eval_shape`'s) restore to the default
  device.
  """
  default = jax.sharding.SingleDeviceSharding(jax.devices()[0])

  def leaf(x):
    x = ocp.utils.to_shape_dtype_struct(x)
    if getattr(x, 'sharding', None) is None:
      x = jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=default)
    return x
  return jax.tree_util.tree_map(leaf, tree)
