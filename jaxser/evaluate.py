"""Evaluation: the eval step, the selected parameters, and a split's outputs.

The training loop (`train`), prediction (`predict`) and the ablation's
embeddings (`ablate`) all evaluate through here, so there is one eval step
and one loop over a split's batches (`outputs`).
"""

import functools
import io
import json
import os
from typing import Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from jaxser import checkpoint as checkpoint_lib
from jaxser import config_lib
from jaxser import fileio
from jaxser import input_pipeline
from jaxser import losses
from jaxser import metrics as metrics_lib
from jaxser import parallel
from jaxser import train_state
from jaxser import xla_options
from jaxser.run_record import RunRecord

__all__ = ['eval_step', 'evaluate', 'make_eval_step', 'outputs', 'restore_selected',
           'run_embeddings']


def eval_step(state: train_state.TrainState, batch: dict) -> dict:
  """Logits and embeddings of a batch (padding rows included)."""
  logits, embeddings = state.apply_fn({'params': state.params},
                                      batch['features'], batch['frame_lengths'])
  return {'logits': logits, 'embeddings': embeddings}


def make_eval_step(mesh: jax.sharding.Mesh | None = None):
  """`eval_step` jitted data parallel over `mesh` (default: every device).

  One jitted function per mesh: every run evaluating on it shares its
  compiled programs.
  """
  return _jitted_eval_step(parallel.make_mesh() if mesh is None else mesh)


@functools.lru_cache(maxsize=None)
def _jitted_eval_step(mesh: jax.sharding.Mesh):
  state, rows = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  return jax.jit(eval_step, in_shardings=(state, rows), out_shardings=rows,
                 compiler_options=xla_options.compiler_options() or None)


def restore_selected(workdir: str) -> tuple[RunRecord, train_state.TrainState]:
  """The checkpoint a run selected, for inference: `(record, state)`.

  The best dev UA checkpoint, or, with a warning, the latest when no dev
  evaluation ran yet (an unfinished run, or one with `num_train_steps <=
  eval_start_step`). The checkpoints are opened read-only: nothing is
  created, and the temporary folder of a save that a training run in
  `workdir` may be writing is left alone; a latest step that such a run
  rotates away while it is read is passed over for the newest one left.
  The state is on the default device; `parallel.replicate` it for a mesh.

  Raises:
    CheckpointError: no (complete) checkpoint, or one this code cannot
      restore.
  """
  checkpoints = checkpoint_lib.Checkpoints(workdir, read_only=True)
  try:
    kind = checkpoint_lib.BEST
    if checkpoints.latest_step(checkpoint_lib.BEST) is None:
      kind = checkpoint_lib.LATEST

    def abstract_of(record: RunRecord):  # the model of the checkpoint's config
      config = record.config_dict()
      model = config_lib.create_model(config, len(record.classes))
      return checkpoint_lib.abstract(train_state.abstract(
          model, record.features.num_bins, learning_rate=config.learning_rate))

    state, record = checkpoints.restore_newest(kind, abstract_of)
  finally:
    checkpoints.close()
  if kind == checkpoint_lib.LATEST:
    logging.warning('%s: no best/ checkpoint (no dev evaluation ran yet): using '
                    'the latest checkpoint, step %d of %d, of a run that may be '
                    'unfinished', workdir, record.step, record.config['num_train_steps'])
  return record, state


def outputs(eval_fn, state: train_state.TrainState, examples: input_pipeline.Examples,
            *, batch_size: int, buckets, mesh: jax.sharding.Mesh,
            every_process: bool = True) -> dict:
  """Logits `[n, classes]` and embeddings `[n, dim]` of a split, in its order.

  Args:
    eval_fn: `make_eval_step(mesh)`.
    state: placed as `parallel.replicate(state, mesh)`.
    examples: the split.
    batch_size, buckets: the evaluation batches.
    mesh: the devices each batch is split over.
    every_process: the mesh spans every process, each of which feeds its own
      rows and receives all outputs (training); False: this process's
      devices only (prediction).
  """
  if every_process:
    place, fetch = (lambda b: parallel.shard_batch(b, mesh)), parallel.to_host
  else:
    sharding = parallel.batch_sharding(mesh)
    place, fetch = (lambda b: jax.device_put(b, sharding)), jax.device_get
  out = {}
  for rows, batch in input_pipeline.eval_batches(examples, batch_size=batch_size,
                                                 buckets=buckets):
    for key, value in fetch(eval_fn(state, place(batch))).items():
      if key not in out:
        out[key] = np.zeros((len(examples), value.shape[-1]), np.float32)
      out[key][rows] = value[:len(rows)]
  return out


def evaluate(eval_fn, state: train_state.TrainState, examples: input_pipeline.Examples,
             *, batch_size: int, buckets, num_classes: int,
             class_weights: np.ndarray | None = None,
             mesh: jax.sharding.Mesh | None = None) -> tuple[dict, dict]:
  """Runs a whole split: metrics, and per-utterance outputs in split order.

  Each batch is split over `mesh` (default: every device) like the training
  batches; with several processes each one feeds its rows and the outputs
  are gathered, so the metrics are over the whole split on every process.

  Returns:
    `(metrics, outputs)`: metrics has 'ua', 'wa', 'f1' (macro), 'ce' (class-weighted when
    `class_weights` is given), 'recall' (per class), 'confusion' (counts);
    outputs has 'logits', 'embeddings', 'labels' in the split's order.
  """
  mesh = parallel.make_mesh() if mesh is None else mesh
  out = outputs(eval_fn, state, examples, batch_size=batch_size, buckets=buckets,
                mesh=mesh)
  logits, labels = out['logits'], np.asarray(examples.labels)
  cm = np.asarray(metrics_lib.confusion_matrix(labels, logits.argmax(-1), num_classes))
  ce = np.asarray(losses.cross_entropy(jnp.asarray(logits), jnp.asarray(labels)))
  weights = np.ones(num_classes) if class_weights is None else np.asarray(class_weights)
  result = {
      'ua': float(metrics_lib.unweighted_accuracy(cm)),
      'wa': float(metrics_lib.weighted_accuracy(cm)),
      'f1': float(metrics_lib.macro_f1(cm)),
      'ce': float(np.sum(weights[labels] * ce) / max(np.sum(weights[labels]), 1e-12)),
      'recall': [float(r) for r in np.asarray(metrics_lib.per_class_recall(cm))],
      'confusion': cm.astype(int).tolist(),
  }
  return result, {'logits': logits, 'embeddings': out['embeddings'], 'labels': labels}


def run_embeddings(fold_dir: str, splits: Sequence[str] = ('test',)) -> dict:
  """Embeddings of a fold's splits under its selected parameters, cached.

  Runs `evaluate.evaluate` on the fold's data (`prepare.prepare` with the
  config saved in the checkpoint). Each split is kept in
  `<fold_dir>/embeddings_<split>.npz` and read back from there later.

  Returns:
    split -> {'z': `[n, dim]`, 'labels': `[n]`, 'ua': the re-evaluated UA,
    'confusion': `[C, C]` counts, 'centers': `[C, dim]` the learned centres,
    'ids': `[n]` the utterance ids, in the rows' order}.
  """
  paths = {s: os.path.join(fold_dir, f'embeddings_{s}.npz') for s in splits}
  source = _embeddings_source(fold_dir)
  missing = [s for s in splits if _saved_source(paths[s]) != source]
  if missing:
    # The selected checkpoint, evaluated as the training run evaluates: the
    # package's jitted eval step over every device, the state replicated.
    record, state = restore_selected(fold_dir)
    config = record.config_dict()
    from jaxser import prepare as prepare_lib  # pylint: disable=g-import-not-at-top (slow to import)
    data = prepare_lib.prepare(config, fold_dir)
    mesh = parallel.make_mesh()
    state = parallel.replicate(state, mesh)
    eval_fn = make_eval_step(mesh)
    for split in missing:
      metrics, out = evaluate(
          eval_fn, state, getattr(data, split), batch_size=config.eval_batch_size,
          buckets=tuple(config.buckets), num_classes=data.label_map.num_classes,
          mesh=mesh)
      buffer = io.BytesIO()
      ids = [data.utterances[int(i)].id for i in getattr(data, split).indices]
      np.savez(buffer, z=out['embeddings'], labels=out['labels'], ua=metrics['ua'],
               confusion=np.asarray(metrics['confusion']), source=source,
               centers=np.asarray(state.centers.centers), ids=np.array(ids))
      fileio.atomic_write(paths[split], buffer.getvalue())
  out = {}
  for split, path in paths.items():
    with np.load(path) as saved:
      out[split] = {'z': saved['z'], 'labels': saved['labels'],
                    'ua': float(saved['ua']), 'confusion': saved['confusion'],
                    'centers': saved['centers'], 'ids': saved['ids']}
  return out


def _embeddings_source(fold_dir: str) -> str:
  """What a fold's embeddings come from: its run's identity and selected step."""
  path = os.path.join(fold_dir, 'results.json')
  results = {}
  if os.path.exists(path):
    with open(path) as f:
      results = json.load(f)
  # Files written before the centres and ids were kept are redone.
  return json.dumps([results.get('identity'), results.get('selected_step'),
                     'with centres and ids'], sort_keys=True)


def _saved_source(path: str) -> str | None:
  """The source an embeddings file was saved from; None if none is readable."""
  try:
    with np.load(path) as saved:
      return str(saved['source'])
  except (OSError, KeyError, ValueError):  # absent, unreadable, or older
    return None
