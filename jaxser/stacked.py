"""Several runs trained side by side as one compiled program (`jax.vmap`).

  results = stacked.train_and_evaluate([config_a, config_b], ['/tmp/a', '/tmp/b'])

Runs of one model that differ only in seed, fold, lambda, alpha or warm-up
(`PER_RUN_FIELDS`; `compatible` says which configs can stack) train as a
stack: every array of their states gains a leading run axis, each step takes
each run's own next batch (its own training split in its own seeded order,
exactly the batches it would see alone), padded to one length, and
`steps.stacked_train_step` updates all of them in one program. Padding rows
are masked as in a single run, and a run already past the step (resumed
further than the others) is masked whole: its state does not change.

Everything else is each run's own, as `train.train_and_evaluate` keeps it: its
workdir, lock, checkpoints (saved from its slice of the stack, in the same
format), resume, dev selection, metrics and report (`train.Ledger`,
`train.final_report`). So a stacked run's parameters, centres, selected step
and results equal the run trained alone up to float rounding (vmap batches
the convolutions and matmuls differently); a run can be resumed stacked or
alone. On several devices the stack is spread over a runs x data mesh
(`parallel.make_run_mesh`). Costs R times the memory of one run's state and
activations (docs/performance.md).
"""

import contextlib
import json
from typing import Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxser import fileio
from jaxser import guards
from jaxser import parallel
from jaxser import progress as progress_lib
from jaxser import steps as steps_lib
from jaxser import train
from jaxser import workdir as workdir_lib
from jaxser.errors import ConfigError
from jaxser.errors import Interrupted
from jaxser.errors import JaxserError

__all__ = ['PER_RUN_FIELDS', 'compatible', 'stack', 'train_and_evaluate', 'unstack']

# What may differ between the runs of one stack: the step's inputs
# (`config_lib.step_hparams`; the class weights come from each run's data),
# the seed and the fold.
PER_RUN_FIELDS = ('seed', 'split_seed', 'fold', 'center_loss_weight', 'center_alpha',
                  'warmup_steps')


def compatible(config: ml_collections.ConfigDict) -> str:
  """A key equal for configs whose runs can train in one stack."""
  values = json.loads(config.to_json_best_effort())
  return json.dumps({k: v for k, v in values.items() if k not in PER_RUN_FIELDS},
                    sort_keys=True)


def stack(trees: Sequence):
  """One pytree whose arrays have a leading axis over `trees`."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, row: int):
  """Run `row`'s pytree of a stack."""
  return jax.tree.map(lambda x: x[row], tree)


def train_and_evaluate(configs: Sequence[ml_collections.ConfigDict],
                       workdirs: Sequence[str], *, interrupt_at_step: int | None = None,
                       start_over: bool = False) -> list[dict | None]:
  """`train.train_and_evaluate` of several runs, trained as one stack.

  Args:
    configs: each run's config; `compatible` must be equal for all.
    workdirs: each run's workdir (distinct).
    interrupt_at_step: stop every run after this step, checkpointed there.
    start_over: discard what earlier runs left in the workdirs.

  Returns:
    Each run's results (as `train.train_and_evaluate` returns them); Nones
    when interrupted.

  Raises:
    ConfigError: configs that cannot stack (naming the fields that differ),
      repeated workdirs, several processes.
    JaxserError: as `train.train_and_evaluate`, for any of the runs.
  """
  _check(configs, workdirs)
  locks = []
  try:
    for config, workdir in zip(configs, workdirs):
      locks.append(workdir_lib.preflight(config, workdir))
    if start_over and parallel.is_chief():
      for workdir in workdirs:
        workdir_lib.discard_run(workdir)
    with contextlib.ExitStack() as closing:
      logs = [closing.enter_context(workdir_lib.log_file(w)) for w in workdirs]
      return _train(configs, workdirs, logs, closing, interrupt_at_step)
  except KeyboardInterrupt:
    kept = '; '.join(guards.kept_message(w, workdir_lib.saved_step(w)) for w in workdirs)
    raise Interrupted(f'interrupted; {kept}; rerun the same command to resume') from None
  except OSError as e:
    raise JaxserError(f'{e.filename or workdirs[0]}: {fileio.reason(e)}; the '
                      'checkpoints saved so far are intact') from e
  finally:
    for lock in locks:
      lock.release()


def _check(configs, workdirs) -> None:
  if len(configs) != len(workdirs) or not configs:
    raise ConfigError(f'{len(configs)} configs for {len(workdirs)} workdirs')
  if len(set(workdirs)) != len(workdirs):
    raise ConfigError(f'the stacked runs need distinct workdirs, got {list(workdirs)}')
  if jax.process_count() > 1 and len(configs) > 1:
    raise ConfigError('runs side by side (parallel_runs > 1) are single-process; '
                      f'this is process {jax.process_index()} of {jax.process_count()}')
  first = json.loads(compatible(configs[0]))
  for config in configs[1:]:
    other = json.loads(compatible(config))
    if other != first:
      differ = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))
      raise ConfigError(f'runs cannot train side by side: their configs differ in '
                        f'{", ".join(differ)} (only {", ".join(PER_RUN_FIELDS)} may)')


def _train(configs, workdirs, logs, closing, interrupt_at_step) -> list[dict | None]:
  """Opens every run, steps the stack to the end, reports each run."""
  config = configs[0]
  data_mesh = parallel.make_mesh()
  train.check_mesh(config, data_mesh)
  run_mesh = parallel.make_run_mesh(len(configs))
  parallel.check_divisible(config.batch_size, jax.sharding.Mesh(
      run_mesh.devices[0], (parallel.DATA_AXIS,)), 'config.batch_size')
  opened = [train.open_run(c, w, data_mesh, closing, log, row=r,
                           interrupt_at_step=interrupt_at_step)
            for r, (c, w, log) in enumerate(zip(configs, workdirs, logs))]
  runs = [run for run, _, _ in opened]
  ledgers = [ledger for _, _, ledger in opened]
  starts = np.array([int(state.step) for _, state, _ in opened])
  logging.info('%d runs side by side on a %s mesh; steps %s of %d done',
               len(runs), dict(run_mesh.shape), starts.tolist(), config.num_train_steps)
  states = jax.device_put(stack([state for _, state, _ in opened]),
                          parallel.run_sharding(run_mesh))
  hparams = jax.device_put(stack([r.hparams for r in runs]), parallel.run_sharding(run_mesh))
  step_fn = steps_lib.make_stacked_train_step(config, run_mesh)
  progress = progress_lib.Progress(int(starts.min()), config.num_train_steps)
  for step in range(int(starts.min()) + 1, config.num_train_steps + 1):
    active = starts < step
    batches = _stacked_batch([next(r.iterator) if on else None
                              for r, on in zip(runs, active)], run_mesh)
    on = jax.device_put(active, parallel.run_sharding(run_mesh))
    states, metrics = progress.step(lambda: step_fn(states, batches, hparams, on),
                                    batches, step)
    interrupted = [ledgers[r].after_step(step, metrics, _state_of(states, r, data_mesh),
                                         progress)
                   for r in np.flatnonzero(active)]
    if any(interrupted):
      return [None] * len(runs)
  return [train.final_report(run, _state_of(states, r, data_mesh)(), ledger.best)
          for r, (run, ledger) in enumerate(zip(runs, ledgers))]


def _state_of(states, row: int, mesh):
  """A callable giving run `row`'s state, replicated on the data mesh."""
  return lambda: parallel.replicate(unstack(states, row), mesh)


def _stacked_batch(batches: list, mesh) -> dict:
  """`[R, B, T, ...]`: each run's batch padded to the longest `T` (frames, or
  samples for waveform batches).

  An inactive run's entry (None) becomes a batch of padding rows only.
  """
  like = next(b for b in batches if b is not None)
  name = 'features' if 'features' in like else 'waveforms'
  size = max(b[name].shape[1] for b in batches if b is not None)
  pad = lambda x: np.pad(x, [(0, 0), (0, size - x.shape[1])] + [(0, 0)] * (x.ndim - 2))
  padded = [None if b is None else dict(b, **{name: pad(b[name])}) for b in batches]
  like = next(b for b in padded if b is not None)
  empty = {k: np.ones_like(v) if k in ('frame_lengths', 'num_samples') else np.zeros_like(v)
           for k, v in like.items()}
  stacked = {k: np.stack([(b or empty)[k] for b in padded]) for k in like}
  return jax.device_put(stacked, parallel.run_batch_sharding(mesh))
