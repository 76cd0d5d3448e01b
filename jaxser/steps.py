"""The jitted steps: the train step of one run, its per-run inputs, and both
steps compiled for a mesh.

`train_step(state, batch, hparams) -> (state, metrics)` is pure: one step of
the joint loss (equation 7), Adam and the centre update (equation 4), the
centres carried in the state. What differs between runs of one model (class
weights, lambda, alpha, the warm-up) are inputs (`config_lib.step_hparams`),
not constants of the program, so the folds and seeds of a cross-validation
and the points of a lambda or alpha sweep share one compiled step per padded
length.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxser import center_loss
from jaxser import config_lib
from jaxser import evaluate as evaluate_lib
from jaxser import features as features_lib
from jaxser import input_augment
from jaxser import input_pipeline
from jaxser import losses
from jaxser import parallel
from jaxser import wave_augment
from jaxser import xla_options
from jaxser.train_state import TrainState

__all__ = ['WaveInput', 'batch_features', 'make_stacked_train_step', 'make_steps',
           'stacked_train_step', 'train_step', 'wave_input']


class WaveInput(NamedTuple):
  """A train step whose batches are waveforms: their features and augmentation."""
  features: features_lib.FeatureParams
  augment: wave_augment.WaveAugment = wave_augment.WaveAugment()


def batch_features(key, batch: dict, hparams: dict, wave: WaveInput):
  """The standardised features of a waveform batch, augmented by `wave.augment`.

  Args:
    key: the augmentation's key (unused when it is off).
    batch: `waveforms [B, (bucket + 2 * margin) * hop]` (`input_pipeline`'s
      waveform batches), `num_samples [B]`, `mask [B]`.
    hparams: `mean` and `inv_std` (`[bins]`), the training split's standardiser.
    wave: the feature parameters and the augmentation.

  Returns:
    `(features [B, bucket, bins], frame_lengths [B])`, as the feature
    cache's batches: 0 on padding. A slowed-down utterance longer than its
    bucket keeps its first `bucket` frames (of the middle `max_frames`).
  """
  waveforms, lengths = batch['waveforms'], batch['num_samples']
  if wave.augment.enabled:
    waveforms, lengths = wave_augment.apply(key, waveforms, lengths, wave.augment)
  feats, frame_lengths = features_lib.extract(waveforms, lengths, wave.features)
  bucket = input_pipeline.bucket_of_width(waveforms.shape[1], wave.features)
  feats, frame_lengths = feats[:, :bucket], jnp.minimum(frame_lengths, bucket)
  valid = features_lib.frame_mask(frame_lengths, feats.shape[1]) & batch['mask'][:, None]
  valid = valid[..., None]  # padding rows are 0, as the cached batches' are
  return jnp.where(valid, (feats - hparams['mean']) * hparams['inv_std'], 0.0), frame_lengths


def train_step(state: TrainState, batch: dict, hparams: dict, *, rule: str = 'ema',
               augment: input_augment.InputAugment = input_augment.InputAugment(),
               wave: WaveInput | None = None) -> tuple[TrainState, dict]:
  """One step of the joint loss (equation 7), Adam and the centre update (4).

  Args:
    state: the current TrainState.
    batch: `features [B, T, F]`, `frame_lengths [B]`, `labels [B]`, `mask [B]`;
      with `wave`, `waveforms` and `num_samples` in place of the first two.
    hparams: `config_lib.step_hparams`: `class_weights [classes]` (from the
      training split's counts), `lam` and `alpha` after the warm-up, `warmup_steps`
      (steps with lambda 0 and alpha 1 first); scalars as 0-d arrays; with
      `augment`'s level or tilt, `inv_std [bins]`.
    rule: the centre update, 'ema' (equation 4) or 'wen'.
    augment: the batch's spectrogram augmentation (`input_augment`; off by
      default), drawn with the step's own key.
    wave: for waveform batches, their features (`batch_features`; with
      `hparams` `mean` and `inv_std`) and augmentation, drawn with that key.

  Returns:
    The new state and a flat dict of scalar metrics.
  """
  lam_t, alpha_t = losses.warmup_schedule(
      state.step, warmup_steps=hparams['warmup_steps'], lam=hparams['lam'],
      alpha=hparams['alpha'])
  labels, mask = batch['labels'], batch['mask']

  # Every step's randomness (dropout, for a model with any) is its own key.
  step_key = jax.random.fold_in(state.rng, state.step)

  features, frame_lengths = _inputs(step_key, batch, hparams, augment, wave)

  def loss_fn(params):
    logits, embeddings = state.apply_fn({'params': params}, features, frame_lengths,
                                        rngs={'dropout': step_key})
    total, parts = losses.joint_loss(logits, embeddings, labels, state.centers,
                                     class_weights=hparams['class_weights'],
                                     lam=lam_t, mask=mask)
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


def _inputs(step_key, batch: dict, hparams: dict, augment, wave):
  """The batch's features and frame lengths, augmented as `train_step` says.

  The augmentations have streams of their own: the dropout key is unchanged.
  """
  if wave is None:
    features, frame_lengths = batch['features'], batch['frame_lengths']
  else:
    features, frame_lengths = batch_features(jax.random.fold_in(step_key, 2), batch,
                                             hparams, wave)
  if augment.enabled:
    features = input_augment.apply(jax.random.fold_in(step_key, 1), features,
                                   frame_lengths, augment, hparams.get('inv_std'))
  return features, frame_lengths


def make_steps(config: ml_collections.ConfigDict,
               mesh: jax.sharding.Mesh | None = None):
  """The jitted train step (state donated) and eval step for a config.

  `train_fn(state, batch, hparams)` takes `config_lib.step_hparams(config,
  class_weights)`; `eval_fn(state, batch)`. Both are data parallel over
  `mesh` (default: a mesh over every device, `parallel.make_mesh()`): the
  batch is split along its first axis, the state and the hyperparameters
  are replicated, and XLA inserts the reductions over the global batch.
  With one device this is the plain single-device step. Give the train step
  a state placed with `parallel.replicate(state, mesh)` (as it returns it),
  or its first call compiles once more for the unplaced state.

  The same jitted functions are returned for every config with the same
  centre update rule and input size on the same mesh, so the folds and
  seeds of a cross-validation compile one train program per padded length.
  """
  mesh = parallel.make_mesh() if mesh is None else mesh
  return (_jitted_train_step(*_program_key(config), mesh),
          evaluate_lib.make_eval_step(mesh))


def wave_input(config: ml_collections.ConfigDict) -> WaveInput | None:
  """The config's `WaveInput`, or None when its batches are cached features."""
  if not config_lib.features_in_step(config):
    return None
  return WaveInput(config_lib.feature_params(config), config_lib.wave_augment(config))


def _program_key(config: ml_collections.ConfigDict) -> tuple:
  """What a train program is compiled for: `(rule, augment, wave, compiler
  options)`.

  The compiler options: faster CPU convolutions (and elementwise fusions,
  for log-Mel inputs), hashable.
  """
  options = xla_options.compiler_options(
      num_bins=config_lib.feature_params(config).num_bins) or {}
  return (config.center_update, config_lib.input_augment(config), wave_input(config),
          tuple(sorted(options.items())))


@functools.lru_cache(maxsize=None)
def _jitted_train_step(rule: str, augment, wave, options: tuple, mesh: jax.sharding.Mesh):
  state, rows = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  return jax.jit(functools.partial(train_step, rule=rule, augment=augment, wave=wave),
                 in_shardings=(state, rows, state), out_shardings=(state, state),
                 donate_argnums=0, compiler_options=dict(options) or None)


def stacked_train_step(states: TrainState, batches: dict, hparams: dict, active: jax.Array,
                       *, rule: str = 'ema',
                       augment: input_augment.InputAugment = input_augment.InputAugment(),
                       wave: WaveInput | None = None) -> tuple[TrainState, dict]:
  """`train_step` of R runs at once (`jax.vmap` over a leading run axis).

  Args:
    states: a TrainState whose every array has a leading axis of R runs.
    batches: each run's batch, `[R, B, ...]`, padded to one length.
    hparams: `config_lib.step_hparams` of each run, stacked (`[R]`, `[R, C]`).
    active: `[R]` bool; an inactive run (finished, or resumed past this step)
      keeps its state unchanged whatever its batch.
    rule, augment, wave: as `train_step`'s.

  Returns:
    The new states and each run's metrics (`[R]` each).
  """
  def one(state, batch, hp, on):
    new, metrics = train_step(state, batch, hp, rule=rule, augment=augment, wave=wave)
    return jax.tree.map(lambda n, o: jnp.where(on, n, o), new, state), metrics

  return jax.vmap(one)(states, batches, hparams, active)


def make_stacked_train_step(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
  """`stacked_train_step` jitted over a runs x data mesh (`parallel.make_run_mesh`).

  The states, hyperparameters and `active` are split over the mesh's 'runs'
  axis, each run's batch over its 'data' axis; states donated. One jitted
  function per rule, input size and mesh, like `make_steps`.
  """
  return _jitted_stacked_step(*_program_key(config), mesh)


@functools.lru_cache(maxsize=None)
def _jitted_stacked_step(rule: str, augment, wave, options: tuple, mesh: jax.sharding.Mesh):
  runs, rows = parallel.run_sharding(mesh), parallel.run_batch_sharding(mesh)
  return jax.jit(functools.partial(stacked_train_step, rule=rule, augment=augment,
                                   wave=wave),
                 in_shardings=(runs, rows, runs, runs), out_shardings=(runs, runs),
                 donate_argnums=0, compiler_options=dict(options) or None)
