"""Training: the jitted train step and the run of one fold, train_and_evaluate.

The step itself is `jaxser.steps.train_step(state, batch, hparams) -> (state,
metrics)`, pure: the class centres live in the state next to the parameters
and the optimizer state, and the whole step (forward, joint loss, Adam,
centre update) is one jit-compiled program per padded length, with the state
donated, shared by every run of the same model and input size.
"""

import contextlib
import json
import os
from typing import Any, Callable, NamedTuple

from absl import logging
import jax
import ml_collections
import numpy as np

from jaxser import checkpoint as checkpoint_lib
from jaxser import config_lib
from jaxser import evaluate as evaluate_lib
from jaxser import fileio
from jaxser import guards
from jaxser import input_pipeline
from jaxser import models
from jaxser import parallel
from jaxser import prepare as prepare_lib
from jaxser import progress as progress_lib
from jaxser import provenance
from jaxser import run_record
from jaxser import steps as steps_lib
from jaxser import train_state
from jaxser import workdir as workdir_lib
from jaxser.errors import Interrupted
from jaxser.errors import JaxserError
from jaxser.errors import NonFiniteError
from jaxser.train_state import TrainState

__all__ = ['create_train_state', 'is_eval_step', 'train_and_evaluate']


def create_train_state(config: ml_collections.ConfigDict, model: models.CRNN,
                       num_bins: int) -> TrainState:
  """`train_state.create` with the config's seed and learning rate."""
  return train_state.create(model, num_bins, seed=config.seed,
                            learning_rate=config.learning_rate)


# --------------------------------------------------------------------------
# The main job.


def _mean_metrics(step_metrics: list[tuple[int, dict]]) -> dict:
  keys = step_metrics[0][1].keys()
  return {k: float(np.mean([m[k] for _, m in step_metrics])) for k in keys}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       interrupt_at_step: int | None = None,
                       start_over: bool = False) -> dict | None:
  """Trains on one fold, selects by dev UA, reports the test split.

  Resumes from the latest checkpoint in `workdir` when there is one, and
  only if it belongs to the same run: the run's identity
  (`run_record.run_identity`: data, split, seeds, schedule, model, features)
  is saved with every checkpoint and compared first.

  Args:
    config: the experiment config.
    workdir: checkpoints, metrics, results and plots go here.
    interrupt_at_step: stop after this step as a pre-empted job would, with a
      checkpoint saved there (for time-sliced schedulers and resume tests);
      the same call without it later finishes the run.
    start_over: discard what an earlier run left in `workdir` (checkpoints,
      metrics, results, plots) and train from the start.

  Returns:
    The results dict also written to `workdir/results.json`; None when
    interrupted.

  Raises:
    JaxserError: a bad config, corpus or workdir; another run's checkpoints
      (IdentityError); a failed write (naming the file and the checkpoint
      left intact); SIGINT (Interrupted).
  """
  lock = workdir_lib.preflight(config, workdir)  # before any corpus work
  try:
    if start_over and parallel.is_chief():
      workdir_lib.discard_run(workdir)
    # Whatever ends the run, the checkpoint managers and the metrics file
    # are closed (orbax's threads finish) before the lock is released.
    with contextlib.ExitStack() as closing:
      run_log = closing.enter_context(workdir_lib.log_file(workdir))
      return _train_and_evaluate(config, workdir, interrupt_at_step, closing, run_log)
  except KeyboardInterrupt:
    kept = guards.kept_message(workdir, workdir_lib.saved_step(workdir))
    raise Interrupted(f'interrupted; {kept}; rerun the same command to resume') from None
  except OSError as e:  # a write that no narrower handler expected
    kept = guards.kept_message(workdir, workdir_lib.saved_step(workdir))
    raise JaxserError(f'{e.filename or workdir}: {fileio.reason(e)}; {kept}') from e
  finally:
    lock.release()


class _Run(NamedTuple):
  """What the training loop and the final report of one run share."""
  config: ml_collections.ConfigDict
  workdir: str
  data: prepare_lib.RunData
  mesh: jax.sharding.Mesh
  train_fn: Callable
  hparams: dict  # config_lib.step_hparams, on the mesh
  eval_fn: Callable
  checkpoints: checkpoint_lib.Checkpoints
  iterator: Any
  writer: workdir_lib.MetricsWriter
  started: str  # when this command began the run (provenance.now())

  def evaluate(self, state, split: str) -> tuple[dict, dict]:
    return evaluate_lib.evaluate(
        self.eval_fn, state, getattr(self.data, split),
        batch_size=self.config.eval_batch_size, buckets=self.config.buckets,
        num_classes=self.data.label_map.num_classes,
        class_weights=self.data.class_weights, mesh=self.mesh)

  def record(self, step: int, best: dict, window=(), *,
             latest: bool) -> run_record.RunRecord:
    """The checkpoint's record (the input position in latest ones only)."""
    return run_record.RunRecord(
        config=json.loads(self.config.to_json_best_effort()),
        classes=tuple(self.data.label_map.classes),
        features=self.data.feature_params, standardizer=self.data.standardizer,
        identity=self.data.identity, step=step,
        iterator=self.iterator.get_state() if latest else None, best=best,
        train_window=tuple(window))


def _train_and_evaluate(config, workdir, interrupt_at_step, closing, run_log):
  """Sets the run up, resumes it if a checkpoint is there, trains, reports."""
  mesh = parallel.make_mesh()
  check_mesh(config, mesh)
  run, state, ledger = open_run(config, workdir, mesh, closing, run_log,
                                interrupt_at_step=interrupt_at_step)
  progress = progress_lib.Progress(int(state.step), config.num_train_steps)
  for step in range(int(state.step) + 1, config.num_train_steps + 1):
    batch = parallel.global_batch(next(run.iterator), run.mesh)
    state, step_metrics = progress.step(lambda: run.train_fn(state, batch, run.hparams),
                                        batch, step)
    if ledger.after_step(step, step_metrics, lambda: state, progress):
      return None  # interrupted as asked
  return final_report(run, state, ledger.best)


def check_mesh(config, mesh) -> None:
  """The batch sizes divide over the mesh; logs the devices."""
  for field in ('batch_size', 'eval_batch_size'):
    parallel.check_divisible(config[field], mesh, f'config.{field}')
  logging.info('devices: %s; data parallel over %d devices (%d processes): '
               'global batch %d, %d per device', ', '.join(provenance.devices()), mesh.devices.size,
               jax.process_count(), config.batch_size,
               config.batch_size // mesh.devices.size)
  if provenance.accelerator_warning():
    logging.warning('%s', provenance.accelerator_warning())


def open_run(config, workdir: str, mesh, closing: contextlib.ExitStack, run_log, *,
             interrupt_at_step: int | None = None, row: int | None = None):
  """A run's data, steps, checkpoints and input, resumed if it was begun.

  `interrupt_at_step` and `row` are the `Ledger`'s.

  Returns:
    `(run, state, ledger)`: the `_Run`, its state (resumed or initial, on
    `mesh`) and its `Ledger`.
  """
  started = provenance.now()
  data = prepare_lib.prepare(config, workdir)
  model = config_lib.create_model(config, data.label_map.num_classes)
  state = parallel.replicate(
      create_train_state(config, model, data.feature_params.num_bins), mesh)
  train_fn, eval_fn = steps_lib.make_steps(config, mesh)
  hparams = parallel.replicate(config_lib.step_hparams(
      config, data.class_weights, data.standardizer), mesh)
  checkpoints = closing.enter_context(checkpoint_lib.Checkpoints(workdir))
  # Each process prepares its own rows of every global batch.
  iterator = input_pipeline.train_iterator(input_pipeline.train_dataset(
      data.train_input, batch_size=config.batch_size, buckets=config.buckets,
      seed=config.seed, shard_index=jax.process_index(),
      shard_count=jax.process_count()))
  state, best, window = _resume(checkpoints, state, iterator, data.identity, workdir)
  run_log.start()  # the workdir holds this run: its log may be written
  writer = closing.enter_context(workdir_lib.MetricsWriter(workdir, int(state.step)))
  run = _Run(config, workdir, data, mesh, train_fn, hparams, eval_fn, checkpoints,
             iterator, writer, started)
  return run, state, Ledger(run, int(state.step), best, window,
                            interrupt_at_step=interrupt_at_step, row=row)


def _resume(checkpoints, state, iterator, identity: dict, workdir: str):
  """`(state, best, window)` from the latest checkpoint, or as they start.

  The saved run's identity is checked before any array is read.
  """
  if checkpoints.latest_step() is None:
    return state, {'ua': -1.0, 'step': None}, []
  restored, record = checkpoints.restore_newest(
      checkpoint_lib.LATEST, checkpoint_lib.abstract(state),
      check=lambda record: run_record.check_identity(
          record.identity, identity, f'{workdir}: its checkpoint'))
  state = state.replace(**{k: getattr(restored, k) for k in
                           ('step', 'params', 'opt_state', 'centers', 'rng')})
  iterator.set_state(record.iterator)
  logging.info('resumed from step %d in %s', int(state.step), workdir)
  return state, record.best, list(record.train_window)


class Ledger:
  """A run's books between steps: metrics, logs, dev selection, checkpoints.

  `after_step` is called after every training step, with the step's device
  metrics (`row`: this run's index in metrics stacked over runs); at a log,
  evaluation or checkpoint step it fetches the metrics, checks them and the
  state (`guards`), then logs, selects by dev UA and saves.
  """

  def __init__(self, run: _Run, start: int, best: dict, window: list, *,
               interrupt_at_step: int | None = None, row: int | None = None):
    self.run, self.best, self.window, self.row = run, best, window, row
    self.interrupt_at_step = interrupt_at_step
    self.last_saved = start or None  # the latest checkpoint on disk, for messages
    self.pending = []  # (step, device metrics) not yet fetched

  def after_step(self, step: int, metrics: dict, state_fn: Callable,
                 progress: progress_lib.Progress) -> bool:
    """Books step `step`; `state_fn()` gives the state after it. True: interrupted."""
    config, run = self.run.config, self.run
    self.pending.append((step, metrics))
    last = step == config.num_train_steps
    log_now = step % config.log_every_steps == 0 or last
    eval_now = is_eval_step(config, step)
    interrupt = step == self.interrupt_at_step
    save_now = step % config.checkpoint_every_steps == 0 or last or interrupt
    if not (log_now or eval_now or save_now):
      return False
    fetched = [(s, {k: float(v if self.row is None else v[self.row])
                    for k, v in jax.device_get(m).items()}) for s, m in self.pending]
    self.pending = []
    state = state_fn()
    kept = guards.kept_message(run.workdir, self.last_saved)
    guards.check_metrics(fetched, kept)  # before anything is evaluated or saved
    guards.check_state(state, step, kept)
    self.window += fetched
    if log_now:
      values = _mean_metrics(self.window)
      run.writer.write(step, 'train', values)
      logging.info('%s%s', '' if self.row is None else f'run {self.row}: ',
                   progress.line(step, values))
      self.window = []
    if eval_now:
      self.best = _select(run, state, step, self.best, kept)
    if save_now:
      run.checkpoints.save(checkpoint_lib.LATEST, step, state,
                           run.record(step, self.best, self.window, latest=True))
      self.last_saved = step
    if interrupt:
      logging.info('interrupted at step %d as asked; rerun to resume', step)
    return interrupt


def is_eval_step(config, step: int) -> bool:
  """Whether dev is evaluated (and may be selected) after training step `step`.

  `step` counts from 1 (the first update). 'jaxser' cadence: steps
  `eval_start_step + k * eval_every_steps` (k >= 1) and the last step. 'code'
  cadence, the authors' loop, which counts its updates from 0 and evaluates
  after update i when `i % eval_every_steps == 0` and `i > eval_start_step`:
  steps `1 + k * eval_every_steps` past `eval_start_step + 1`, and not the
  last step unless it falls on one (3520 steps, every 11 from 200: jaxser
  211, 222, ..., 3511, 3520; code 210, 221, ..., 3510).
  """
  start, every = config.eval_start_step, config.eval_every_steps
  if config.eval_cadence == 'code':
    return step - 1 > start and (step - 1) % every == 0
  return step > start and ((step - start) % every == 0
                           or step == config.num_train_steps)


def _select(run: _Run, state, step: int, best: dict, kept: str) -> dict:
  """Evaluates dev; saves the best checkpoint when UA improves (strictly)."""
  dev, _ = run.evaluate(state, 'dev')
  if not np.isfinite(dev['ce']):
    raise NonFiniteError(f'step {step}: the dev cross-entropy is {dev["ce"]} '
                         f'(non-finite logits); training stopped, {kept}')
  run.writer.write(step, 'dev', {k: dev[k] for k in ('ua', 'wa', 'f1', 'ce')})
  logging.info('step %d dev UA %.4f WA %.4f F1 %.4f', step, dev['ua'], dev['wa'],
               dev['f1'])
  if dev['ua'] > best['ua']:
    best = {'ua': dev['ua'], 'wa': dev['wa'], 'step': step}
    run.checkpoints.save(checkpoint_lib.BEST, step, state,
                         run.record(step, best, latest=False))
  return best


def final_report(run: _Run, state, best: dict) -> dict:
  """Test (and dev) with the best parameters; results.json and plots."""
  config, workdir, data = run.config, run.workdir, run.data
  if best['step'] is not None:
    restored, _ = run.checkpoints.restore(checkpoint_lib.BEST,
                                          checkpoint_lib.abstract(state))
    state = state.replace(params=restored.params, centers=restored.centers)
  else:
    logging.warning('no dev evaluation ran (no evaluation step by num_train_steps, '
                    'config.eval_cadence %r): reporting the final parameters',
                    config.eval_cadence)
  dev, _ = run.evaluate(state, 'dev')
  test, test_out = run.evaluate(state, 'test')
  step = config.num_train_steps
  run.writer.write(step, 'test', {k: test[k] for k in ('ua', 'wa', 'f1', 'ce')})
  results = {
      'fold': data.fold_name, 'seed': config.seed,
      'classes': list(data.label_map.classes),
      'selected_step': best['step'], 'dev': dev, 'test': test,
      'ua': test['ua'], 'wa': test['wa'], 'f1': test['f1'],
      'confusion': test['confusion'],
      'split_sizes': {'train': len(data.train), 'dev': len(data.dev),
                      'test': len(data.test)},
  }
  results['identity'] = data.identity  # crossval and ablate check it on reuse
  results['provenance'] = provenance.describe(config, run.started)
  run.writer.hparams(config, {f'test/{k}': test[k] for k in ('ua', 'wa', 'f1')})
  if parallel.is_chief():  # complete or absent: crossval reads it
    try:
      fileio.write_json(os.path.join(workdir, 'results.json'), results)
    except JaxserError as e:
      raise JaxserError(f'{e}; the checkpoints are intact: rerun the same '
                        'command to redo the report') from e
  if config.plots:
    from jaxser import plots  # pylint: disable=g-import-not-at-top (matplotlib is slow to import)
    _, train_out = run.evaluate(state, 'train')
    if parallel.is_chief():
      results['plots'] = plots.run_plots(
          workdir, data.label_map.classes, test['confusion'], train_out, test_out,
          title=plots.run_title(config, data.fold_name, test),
          centers=np.asarray(state.centers.centers))
  logging.info('test UA %.4f WA %.4f F1 %.4f (selected step %s)', test['ua'],
               test['wa'], test['f1'], best['step'])
  return results
