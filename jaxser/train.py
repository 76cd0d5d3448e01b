"""Training and evaluation: TrainState, the jitted steps, train_and_evaluate.

`train_step(state, batch) -> (state, metrics)` is pure: the class centres live
in the state next to the parameters and the optimizer state, and the whole
step (forward, joint loss, Adam, centre update) is one jit-compiled program
per padded length, with the state donated.
"""

import contextlib
import functools
import json
import os
import shutil
import sys
import time
from typing import Any, Callable

from absl import logging
from flax import struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxser import center_loss
from jaxser import checkpoint as checkpoint_lib
from jaxser import input_pipeline
from jaxser import losses
from jaxser import metrics as metrics_lib
from jaxser import models
from jaxser import experiment
from jaxser import fileio
from jaxser import parallel
from jaxser.errors import Interrupted
from jaxser.errors import JaxserError
from jaxser.errors import NonFiniteError


@struct.dataclass
class TrainState:
  """Everything a training step reads and writes."""
  step: jax.Array  # int32 scalar: steps taken.
  params: Any
  opt_state: Any
  centers: center_loss.CenterLossState  # [classes, embedding_dim]
  rng: jax.Array  # one key; per-step keys are fold_in(rng, step)
  apply_fn: Callable = struct.field(pytree_node=False)
  tx: optax.GradientTransformation = struct.field(pytree_node=False)


def create_model(config: ml_collections.ConfigDict, num_classes: int) -> models.CRNN:
  convs = tuple(models.ConvSpec(*layer) for layer in config.model.convs)
  return models.CRNN(num_classes=num_classes, convs=convs,
                     gru_units=config.model.gru_units,
                     embedding_dim=config.model.embedding_dim,
                     share_gru_weights=config.model.share_gru_weights)


def create_train_state(config: ml_collections.ConfigDict, model: models.CRNN,
                       num_bins: int) -> TrainState:
  """Initial parameters (from `config.seed`), Adam state and zero centres."""
  rng = jax.random.PRNGKey(config.seed)
  init_rng, state_rng = jax.random.split(rng)
  frames = models.min_frames(model.convs)
  variables = model.init(init_rng, jnp.zeros((1, frames, num_bins), jnp.float32),
                         jnp.full((1,), frames, jnp.int32))
  tx = optax.adam(config.learning_rate)
  params = variables['params']
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
      centers=center_loss.init(model.num_classes, model.embedding_dim),
      rng=state_rng, apply_fn=model.apply, tx=tx)


def train_step(state: TrainState, batch: dict, *, class_weights: jax.Array,
               lam: float, alpha: float, warmup_steps: int,
               rule: str = 'ema') -> tuple[TrainState, dict]:
  """One step of the joint loss (equation 7), Adam and the centre update (4).

  Args:
    state: the current TrainState.
    batch: `features [B, T, F]`, `frame_lengths [B]`, `labels [B]`, `mask [B]`.
    class_weights: `[classes]` from the training split's counts.
    lam, alpha: lambda and alpha after the warm-up.
    warmup_steps: steps with lambda 0 and alpha 1 first.
    rule: the centre update, 'ema' (equation 4) or 'wen'.

  Returns:
    The new state and a flat dict of scalar metrics.
  """
  lam_t, alpha_t = losses.warmup_schedule(
      state.step, warmup_steps=warmup_steps, lam=lam, alpha=alpha)
  labels, mask = batch['labels'], batch['mask']

  def loss_fn(params):
    logits, embeddings = state.apply_fn({'params': params}, batch['features'],
                                        batch['frame_lengths'])
    total, parts = losses.joint_loss(logits, embeddings, labels, state.centers,
                                     class_weights=class_weights, lam=lam_t,
                                     mask=mask)
    return total, (logits, embeddings, parts)

  (total, (logits, embeddings, parts)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  centers = center_loss.update(state.centers, embeddings, labels,
                               alpha=alpha_t, mask=mask, rule=rule)
  correct = (jnp.argmax(logits, -1) == labels) & mask
  metrics = {
      'loss': total, 'ce': parts['ce'], 'center': parts['center'],
      'lambda': lam_t, 'alpha': alpha_t,
      'accuracy': jnp.sum(correct) / jnp.maximum(jnp.sum(mask), 1),
      'grad_norm': optax.tree.norm(grads),
      'center_max_abs': jnp.max(jnp.abs(centers.centers)),
  }
  new_state = state.replace(step=state.step + 1, params=params,
                            opt_state=opt_state, centers=centers)
  return new_state, metrics


def eval_step(state: TrainState, batch: dict) -> dict:
  """Logits and embeddings of a batch (padding rows included)."""
  logits, embeddings = state.apply_fn({'params': state.params},
                                      batch['features'], batch['frame_lengths'])
  return {'logits': logits, 'embeddings': embeddings}


def make_steps(config: ml_collections.ConfigDict, class_weights: np.ndarray,
               mesh: jax.sharding.Mesh | None = None):
  """The jitted train step (state donated) and eval step for a config.

  Both are data parallel over `mesh` (default: a mesh over every device,
  `parallel.make_mesh()`): the batch is split along its first axis, the state
  is replicated, and XLA inserts the reductions over the global batch. With
  one device this is the plain single-device step. Give the train step a
  state placed with `parallel.replicate(state, mesh)` (as it returns it), or
  its first call compiles once more for the unplaced state.
  """
  step = functools.partial(
      train_step, class_weights=jnp.asarray(class_weights, jnp.float32),
      lam=config.center_loss_weight, alpha=config.center_alpha,
      warmup_steps=config.warmup_steps, rule=config.center_update)
  mesh = parallel.make_mesh() if mesh is None else mesh
  state, rows = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  # Faster CPU convolutions (and elementwise fusions, for log-Mel inputs).
  options = models.compiler_options(
      num_bins=experiment.feature_params(config).num_bins) or None
  return (jax.jit(step, in_shardings=(state, rows), out_shardings=(state, state),
                  donate_argnums=0, compiler_options=options),
          make_eval_step(mesh))


def make_eval_step(mesh: jax.sharding.Mesh | None = None):
  """`eval_step` jitted data parallel over `mesh` (default: every device)."""
  mesh = parallel.make_mesh() if mesh is None else mesh
  state, rows = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  return jax.jit(eval_step, in_shardings=(state, rows), out_shardings=rows,
                 compiler_options=models.compiler_options() or None)


def restore_selected(workdir: str) -> tuple[dict, TrainState]:
  """The checkpoint a run selected, for inference: `(meta, state)`.

  The best dev UA checkpoint, or, with a warning, the latest when no dev
  evaluation ran yet (an unfinished run, or one with `num_train_steps <=
  eval_start_step`). The checkpoints are opened read-only: nothing is
  created, and the temporary folder of a save that a training run in
  `workdir` may be writing is left alone; a latest step that such a run
  rotates away while it is read is passed over for the newest one left.
  The state holds the selected parameters (the rest is freshly initialised)
  on the default device; `parallel.replicate` it for a mesh.

  Raises:
    CheckpointError: no (complete) checkpoint, or one this code cannot
      restore.
  """
  checkpoints = checkpoint_lib.Checkpoints(workdir, read_only=True)
  try:
    kind = checkpoint_lib.BEST
    if checkpoints.latest_step(checkpoint_lib.BEST) is None:
      kind = checkpoint_lib.LATEST
    fresh = {}

    def abstract_of(meta):  # the model of each checkpoint's own config
      config = ml_collections.ConfigDict(meta['config'])
      fresh['state'] = create_train_state(
          config, create_model(config, len(meta['classes'])),
          experiment.feature_params(config).num_bins)
      return checkpoint_lib.abstract(fresh['state'])

    restored, meta = checkpoints.restore_newest(kind, abstract_of)
  finally:
    checkpoints.close()
  if kind == checkpoint_lib.LATEST:
    logging.warning('%s: no best/ checkpoint (no dev evaluation ran yet): using '
                    'the latest checkpoint, step %d of %d, of a run that may be '
                    'unfinished', workdir, meta['step'], meta['config']['num_train_steps'])
  return meta, fresh['state'].replace(params=restored.params)


def evaluate(eval_fn, state: TrainState, examples: input_pipeline.Examples, *,
             batch_size: int, buckets, num_classes: int,
             class_weights: np.ndarray | None = None,
             mesh: jax.sharding.Mesh | None = None) -> tuple[dict, dict]:
  """Runs a whole split: metrics, and per-utterance outputs in split order.

  Each batch is split over `mesh` (default: every device) like the training
  batches; with several processes each one feeds its rows and the outputs
  are gathered, so the metrics are over the whole split on every process.

  Returns:
    `(metrics, outputs)`: metrics has 'ua', 'wa', 'ce' (class-weighted when
    `class_weights` is given), 'recall' (per class), 'confusion' (counts);
    outputs has 'logits', 'embeddings', 'labels' in the split's order.
  """
  n = len(examples)
  mesh = parallel.make_mesh() if mesh is None else mesh
  logits = np.zeros((n, num_classes), np.float32)
  embeddings = None
  for rows, batch in input_pipeline.eval_batches(examples, batch_size=batch_size,
                                                 buckets=buckets):
    out = parallel.to_host(eval_fn(state, parallel.shard_batch(batch, mesh)))
    logits[rows] = out['logits'][:len(rows)]
    if embeddings is None:
      embeddings = np.zeros((n, out['embeddings'].shape[-1]), np.float32)
    embeddings[rows] = out['embeddings'][:len(rows)]
  labels = np.asarray(examples.labels)
  cm = np.asarray(metrics_lib.confusion_matrix(labels, logits.argmax(-1), num_classes))
  ce = np.asarray(losses.weighted_cross_entropy(jnp.asarray(logits), jnp.asarray(labels)))
  weights = np.ones(num_classes) if class_weights is None else np.asarray(class_weights)
  result = {
      'ua': float(metrics_lib.unweighted_accuracy(cm)),
      'wa': float(metrics_lib.weighted_accuracy(cm)),
      'ce': float(np.sum(weights[labels] * ce) / max(np.sum(weights[labels]), 1e-12)),
      'recall': [float(r) for r in np.asarray(metrics_lib.per_class_recall(cm))],
      'confusion': cm.astype(int).tolist(),
  }
  return result, {'logits': logits, 'embeddings': embeddings, 'labels': labels}


# --------------------------------------------------------------------------
# The main job.


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
    self._tb = _summary_writer(os.path.join(workdir, 'tensorboard'))

  def write(self, step: int, split: str, values: dict) -> None:
    if not self.enabled:
      return
    record = {'step': int(step), 'split': split, **values}
    with self._naming_the_file():
      self._file.write(json.dumps(record) + '\n')
      self._file.flush()
    for key, value in values.items():
      if isinstance(value, (int, float)):
        self._tb.add_scalar(f'{split}/{key}', value, step)

  def close(self):
    if self.enabled and not self._file.closed:
      with self._naming_the_file():
        self._tb.close()
        self._file.close()

  @contextlib.contextmanager
  def _naming_the_file(self):
    try:
      yield
    except OSError as e:  # a write to an open file names none
      raise OSError(e.errno, e.strerror, e.filename or self.path) from e

  def __enter__(self):
    return self

  def __exit__(self, error_type, error, traceback):
    try:
      self.close()
    except OSError as e:
      if error_type is None:
        raise
      logging.warning('%s: %s (while stopping)', e.filename, fileio.reason(e))


def _summary_writer(logdir: str):
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
  return SummaryWriter(logdir)


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


# What each training metric checked for NaN and Inf measures, for messages.
_CHECKED = {'loss': 'the joint loss', 'ce': 'the cross-entropy loss',
            'center': 'the centre loss', 'center_max_abs': 'the class centres',
            'grad_norm': 'the gradients'}


def _check_finite(step_metrics: list[tuple[int, dict]], kept: str) -> None:
  """Raises NonFiniteError naming the first step and quantity that is NaN/Inf."""
  for step, values in step_metrics:
    for key, what in _CHECKED.items():
      if not np.isfinite(values[key]):
        raise NonFiniteError(
            f'step {step}: {what} became non-finite ({key} = {values[key]}); '
            f'training stopped, {kept}')


@jax.jit
def _finite_leaves(tree):
  return jax.tree_util.tree_map(lambda x: jnp.all(jnp.isfinite(x)), tree)


def _check_state_finite(state: TrainState, step: int, kept: str) -> None:
  """Raises NonFiniteError if any parameter, optimizer moment or centre is."""
  parts = {'params': state.params, 'opt_state': state.opt_state,
           'centers': state.centers}
  flags = jax.device_get(_finite_leaves(parts))
  bad = [jax.tree_util.keystr(path) for path, ok in
         jax.tree_util.tree_flatten_with_path(flags)[0] if not ok]
  if bad:
    raise NonFiniteError(
        f'step {step}: non-finite values in the training state '
        f'({", ".join(bad[:4])}{", ..." if len(bad) > 4 else ""}); '
        f'training stopped, {kept}')


def _kept_message(workdir: str, step: int | None) -> str:
  if step is None:
    return 'no checkpoint was saved before'
  return (f'the last good checkpoint (step {step}) is kept in '
          f'{os.path.join(workdir, checkpoint_lib.LATEST)}')


def _mean_metrics(step_metrics: list[tuple[int, dict]]) -> dict:
  keys = step_metrics[0][1].keys()
  return {k: float(np.mean([m[k] for _, m in step_metrics])) for k in keys}


class _Progress:
  """Steps per second and ETA for the progress line."""

  def __init__(self, start_step: int, total: int):
    self.start_step, self.total = start_step, total
    self.t0 = time.perf_counter()

  def line(self, step: int, values: dict) -> str:
    elapsed = time.perf_counter() - self.t0
    rate = (step - self.start_step) / max(elapsed, 1e-9)
    eta = (self.total - step) / max(rate, 1e-9)
    return (f'step {step}/{self.total} loss {values["loss"]:.4f} '
            f'ce {values["ce"]:.4f} center {values["center"]:.4f} '
            f'acc {values["accuracy"]:.3f} | {rate:.2f} steps/s, ETA {eta:.0f} s')


def _meta(config, data, state_step: int, iterator_state, best: dict,
          window: list) -> dict:
  return {
      'config': json.loads(config.to_json_best_effort()),
      'classes': list(data.label_map.classes),
      'features': data.feature_params.to_dict(),
      'standardizer': {'mean': np.asarray(data.standardizer.mean).tolist(),
                       'std': np.asarray(data.standardizer.std).tolist()},
      'identity': data.identity,
      'step': int(state_step),
      'iterator': iterator_state,
      'best': best,
      'train_window': window,  # metrics since the last log line, for resuming
  }


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       interrupt_at_step: int | None = None,
                       start_over: bool = False) -> dict | None:
  """Trains on one fold, selects by dev UA, reports the test split.

  Resumes from the latest checkpoint in `workdir` when there is one, and
  only if it belongs to the same run: the run's identity
  (`experiment.run_identity`: data, split, seeds, schedule, model, features)
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
  lock = experiment.preflight(config, workdir)  # before any corpus work
  try:
    if start_over and parallel.is_chief():
      discard_run(workdir)
    # Whatever ends the run, the checkpoint managers and the metrics file
    # are closed (orbax's threads finish) before the lock is released.
    with contextlib.ExitStack() as closing:
      return _train_and_evaluate(config, workdir, interrupt_at_step, closing)
  except KeyboardInterrupt:
    raise Interrupted(f'interrupted; {_kept_message(workdir, _saved_step(workdir))}; '
                      'rerun the same command to resume') from None
  except OSError as e:  # a write that no narrower handler expected
    raise JaxserError(f'{e.filename or workdir}: {fileio.reason(e)}; '
                      f'{_kept_message(workdir, _saved_step(workdir))}') from e
  finally:
    lock.release()


# What a run writes in its workdir (all of it goes with --start_over).
RUN_OUTPUTS = (checkpoint_lib.LATEST, checkpoint_lib.BEST, checkpoint_lib.DAMAGED,
               'tensorboard', 'metrics.jsonl', 'results.json', 'confusion.png',
               'embeddings_pca.png', 'curves.png')


def discard_run(workdir: str) -> None:
  """Deletes what a run left in `workdir` (its `RUN_OUTPUTS`)."""
  for name in RUN_OUTPUTS:
    path = os.path.join(workdir, name)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    elif os.path.lexists(path):
      os.remove(path)
  logging.info('%s: discarded the earlier run (--start_over)', workdir)


def _saved_step(workdir: str) -> int | None:
  """The newest complete latest checkpoint on disk, for messages."""
  folder = os.path.join(workdir, checkpoint_lib.LATEST)
  steps = [int(n) for n in os.listdir(folder) if n.isdigit()] if os.path.isdir(folder) else []
  return max(steps, default=None)


def _train_and_evaluate(config, workdir, interrupt_at_step, closing):
  mesh = parallel.make_mesh()
  parallel.check_batch_sizes(config, mesh)
  logging.info('data parallel over %d devices (%d processes): global batch %d, '
               '%d per device', mesh.devices.size, jax.process_count(),
               config.batch_size, config.batch_size // mesh.devices.size)
  data = experiment.prepare(config, workdir)
  num_classes = data.label_map.num_classes
  model = create_model(config, num_classes)
  state = parallel.replicate(
      create_train_state(config, model, data.feature_params.num_bins), mesh)
  train_fn, eval_fn = make_steps(config, data.class_weights, mesh)
  checkpoints = closing.enter_context(checkpoint_lib.Checkpoints(workdir))
  # Each process prepares its own rows of every global batch.
  dataset = input_pipeline.train_dataset(
      data.train, batch_size=config.batch_size, buckets=config.buckets,
      seed=config.seed, shard_index=jax.process_index(),
      shard_count=jax.process_count())
  iterator = input_pipeline.train_iterator(dataset)

  # Resume.
  best = {'ua': -1.0, 'step': None}
  window = []  # (step, metrics) since the last train log line
  if checkpoints.latest_step() is not None:
    # The saved run's identity is checked before any array is read.
    restored, meta = checkpoints.restore_newest(
        checkpoint_lib.LATEST, checkpoint_lib.abstract(state),
        check_meta=lambda meta: experiment.check_identity(
            meta.get('identity'), data.identity, f'{workdir}: its checkpoint'))
    state = state.replace(**{k: getattr(restored, k) for k in
                             ('step', 'params', 'opt_state', 'centers', 'rng')})
    iterator.set_state(meta['iterator'])
    best = meta['best']
    window = [tuple(item) for item in meta['train_window']]
    logging.info('resumed from step %d in %s', int(state.step), workdir)
  start = int(state.step)
  last_saved = start or None  # the latest checkpoint on disk, for messages
  writer = closing.enter_context(MetricsWriter(workdir, start))
  progress = _Progress(start, config.num_train_steps)
  eval_kw = dict(batch_size=config.eval_batch_size, buckets=config.buckets,
                 num_classes=num_classes, class_weights=data.class_weights,
                 mesh=mesh)

  pending = []  # (step, device metrics) not yet fetched
  for step in range(start + 1, config.num_train_steps + 1):
    state, step_metrics = train_fn(state, parallel.global_batch(next(iterator), mesh))
    pending.append((step, step_metrics))
    last = step == config.num_train_steps
    log_now = step % config.log_every_steps == 0 or last
    eval_now = (step > config.eval_start_step and
                ((step - config.eval_start_step) % config.eval_every_steps == 0 or last))
    interrupt = step == interrupt_at_step
    save_now = step % config.checkpoint_every_steps == 0 or last or interrupt
    if not (log_now or eval_now or save_now):
      continue
    fetched = [(s, {k: float(v) for k, v in jax.device_get(m).items()})
               for s, m in pending]
    pending = []
    kept = _kept_message(workdir, last_saved)
    _check_finite(fetched, kept)  # before anything is evaluated or saved
    _check_state_finite(state, step, kept)
    window += fetched
    if log_now:
      values = _mean_metrics(window)
      writer.write(step, 'train', values)
      logging.info('%s', progress.line(step, values))
      window = []
    if eval_now:
      dev, _ = evaluate(eval_fn, state, data.dev, **eval_kw)
      if not np.isfinite(dev['ce']):
        raise NonFiniteError(f'step {step}: the dev cross-entropy is {dev["ce"]} '
                             f'(non-finite logits); training stopped, {kept}')
      writer.write(step, 'dev', {k: dev[k] for k in ('ua', 'wa', 'ce')})
      logging.info('step %d dev UA %.4f WA %.4f', step, dev['ua'], dev['wa'])
      if dev['ua'] > best['ua']:
        best = {'ua': dev['ua'], 'wa': dev['wa'], 'step': step}
        checkpoints.save(checkpoint_lib.BEST, step, state,
                         _meta(config, data, step, None, best, []))
    if save_now:
      checkpoints.save(checkpoint_lib.LATEST, step, state,
                       _meta(config, data, step, iterator.get_state(), best, window))
      last_saved = step
    if interrupt:
      logging.info('interrupted at step %d as asked; rerun to resume', step)
      return None

  return _final_report(config, workdir, data, state, eval_fn, checkpoints,
                       best, eval_kw, writer)


def _final_report(config, workdir, data, state, eval_fn, checkpoints, best,
                  eval_kw, writer):
  """Test (and dev) with the best parameters; results.json and plots."""
  if best['step'] is not None:
    restored, _ = checkpoints.restore(checkpoint_lib.BEST,
                                      checkpoint_lib.abstract(state))
    state = state.replace(params=restored.params, centers=restored.centers)
  else:
    logging.warning('no dev evaluation ran (num_train_steps <= eval_start_step): '
                    'reporting the final parameters')
  dev, _ = evaluate(eval_fn, state, data.dev, **eval_kw)
  test, test_out = evaluate(eval_fn, state, data.test, **eval_kw)
  step = config.num_train_steps
  writer.write(step, 'test', {k: test[k] for k in ('ua', 'wa', 'ce')})
  results = {
      'fold': data.fold_name, 'seed': config.seed,
      'classes': list(data.label_map.classes),
      'selected_step': best['step'], 'dev': dev, 'test': test,
      'ua': test['ua'], 'wa': test['wa'], 'confusion': test['confusion'],
      'split_sizes': {'train': len(data.train), 'dev': len(data.dev),
                      'test': len(data.test)},
  }
  results['identity'] = data.identity  # crossval and ablate check it on reuse
  if parallel.is_chief():  # complete or absent: crossval reads it
    try:
      fileio.write_json(os.path.join(workdir, 'results.json'), results)
    except JaxserError as e:
      raise JaxserError(f'{e}; the checkpoints are intact: rerun the same '
                        'command to redo the report') from e
  if config.plots:
    _, train_out = evaluate(eval_fn, state, data.train, **eval_kw)
    if parallel.is_chief():
      results['plots'] = experiment.write_plots(
          workdir, data.label_map.classes, test['confusion'], train_out, test_out)
  logging.info('test UA %.4f WA %.4f (selected step %s)', test['ua'], test['wa'],
               best['step'])
  return results
