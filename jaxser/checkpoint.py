"""Checkpoints on orbax: the latest state for resuming, the best by dev UA.

The only module that knows orbax. A workdir holds

  checkpoints/<step>/   the latest training states (resuming)
  best/<step>/          the state with the best dev UA (reporting, predict)

and each checkpoint has two items: `state` (the TrainState pytree: step,
params, optimizer state, centres, RNG key) and `meta` (JSON: the config, the
class names, the feature parameters, the standardisation statistics, the
input iterator's position, the selection record), so one checkpoint is enough
to resume training or to predict.

orbax writes each checkpoint to a temporary folder and renames it when
complete, so a run killed mid-save leaves no checkpoint that would be
restored; `latest_step` only sees finished ones.
"""

import contextlib
import os
from typing import Any

from absl import logging
import jax
import orbax.checkpoint as ocp

from jaxser.errors import CheckpointError

LATEST = 'checkpoints'
BEST = 'best'


@contextlib.contextmanager
def _quiet():
  """orbax logs every step of its work at INFO; keep the run's log readable."""
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.WARNING)
  try:
    yield
  finally:
    logging.set_verbosity(verbosity)


class Checkpoints:
  """One orbax manager per kind ('checkpoints' and 'best') in a workdir."""

  def __init__(self, workdir: str, *, keep: int = 2):
    self.workdir = os.path.abspath(workdir)
    self._managers = {}
    with _quiet():
      self._open(keep)

  def _open(self, keep):
    for kind, max_to_keep in ((LATEST, keep), (BEST, 1)):
      options = ocp.CheckpointManagerOptions(
          max_to_keep=max_to_keep, create=True,
          enable_async_checkpointing=False, cleanup_tmp_directories=True)
      self._managers[kind] = ocp.CheckpointManager(
          os.path.join(self.workdir, kind), options=options,
          item_names=('state', 'meta'))

  def latest_step(self, kind: str = LATEST) -> int | None:
    return self._managers[kind].latest_step()

  def save(self, kind: str, step: int, state: Any, meta: dict) -> None:
    """Saves `state` and `meta` as step `step` of `kind`, and waits for it."""
    manager = self._managers[kind]
    with _quiet():
      if step in manager.all_steps():  # a resumed run redoing a step
        manager.delete(step)
      manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                   force=True)
      manager.wait_until_finished()
    logging.info('saved %s checkpoint at step %d', kind, step)

  def restore_meta(self, kind: str = BEST, step: int | None = None) -> dict:
    """The JSON side of a checkpoint (config, classes, standardiser...)."""
    manager, step = self._manager_step(kind, step)
    with _quiet():
      return manager.restore(step, args=ocp.args.Composite(
          meta=ocp.args.JsonRestore()))['meta']

  def restore(self, kind: str, abstract_state: Any,
              step: int | None = None) -> tuple[Any, dict]:
    """Restores `(state, meta)`; `abstract_state` gives the tree and shapes.

    Raises:
      CheckpointError: there is no checkpoint, or its arrays do not fit the
        shapes of `abstract_state` (another model or class set).
    """
    manager, step = self._manager_step(kind, step)
    try:
      with _quiet():
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            meta=ocp.args.JsonRestore()))
    except (ValueError, KeyError, TypeError) as e:
      raise CheckpointError(
          f'{manager.directory}/{step}: does not fit this model and config '
          f'({e})') from e
    return restored['state'], restored['meta']

  def _manager_step(self, kind, step):
    manager = self._managers[kind]
    step = manager.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f'no {kind} checkpoint in {self.workdir}')
    return manager, step

  def close(self):
    with _quiet():
      for manager in self._managers.values():
        manager.close()


def abstract(tree: Any) -> Any:
  """Shapes and dtypes of a pytree, the target of a restore."""
  return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tree)
