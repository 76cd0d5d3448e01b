"""A config turned into the typed objects a run needs, once.

A run's `ConfigDict` is read here and nowhere below: `feature_params`,
`convs`, `create_model` and `step_hparams` build what the layers take, and
`validate` checks a config by building them (plus the fields that only the
driver reads), so a bad field fails before any work, named.
"""

import os

import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxser import data as data_lib
from jaxser.data import demo_recipes
from jaxser import features as features_lib
from jaxser import input_augment as input_augment_lib
from jaxser import models
from jaxser import protocols
from jaxser import standardize
from jaxser import wave_augment as wave_augment_lib
from jaxser.errors import ConfigError

__all__ = ['cache_dir', 'convs', 'create_model', 'feature_params', 'features_in_step',
           'input_augment', 'protocol_options', 'set_fields', 'step_hparams', 'validate',
           'wave_augment']


def feature_params(config: ml_collections.ConfigDict) -> features_lib.FeatureParams:
  """`FeatureParams` of `config.features` (every field of it).

  Raises:
    ConfigError: naming the field and why.
  """
  try:
    return features_lib.FeatureParams(**config.features)
  except (ValueError, TypeError) as e:
    raise ConfigError(f'config.features.{e}') from e


def convs(config: ml_collections.ConfigDict) -> tuple[models.ConvSpec, ...]:
  """The conv layers of `config.model.convs`."""
  try:
    return tuple(models.ConvSpec(*layer) for layer in config.model.convs)
  except TypeError as e:
    raise ConfigError(f'config.model.convs={config.model.convs!r}: {e}') from e


def create_model(config: ml_collections.ConfigDict, num_classes: int) -> models.CRNN:
  """The CRNN of `config.model` for `num_classes` classes."""
  return models.CRNN(num_classes=num_classes, convs=convs(config),
                     gru_units=config.model.gru_units,
                     embedding_dim=config.model.embedding_dim,
                     share_gru_weights=config.model.share_gru_weights,
                     gru_cell=config.model.gru_cell, prelu=config.model.prelu,
                     kernel_init=config.model.kernel_init,
                     utterance_norm=config.model.get('utterance_norm', 'none'))


def step_hparams(config: ml_collections.ConfigDict, class_weights,
                 standardizer: standardize.Standardizer | None = None) -> dict:
  """The train step's per-run inputs: class weights, lambda, alpha, warm-up.

  Arrays, not constants of the program: runs that differ only in these (and
  in seed or data) share one compiled step. With `config.input_augment`'s
  level or tilt on, also `inv_std` (`[bins]`, 1 / the standardiser's std);
  with the features computed in the step (`features_in_step`), `mean` and
  `inv_std`, which standardise them there.
  """
  hparams = {'class_weights': jnp.asarray(class_weights, jnp.float32),
             'lam': jnp.asarray(config.center_loss_weight, jnp.float32),
             'alpha': jnp.asarray(config.center_alpha, jnp.float32),
             'warmup_steps': jnp.asarray(config.warmup_steps, jnp.int32)}
  augment = input_augment(config)
  in_step = features_in_step(config)
  if augment.gain_db or augment.tilt_db or in_step:
    if standardizer is None:
      raise ValueError('config.input_augment gain_db/tilt_db and features computed in '
                       "the step need the training split's standardiser")
    hparams['inv_std'] = jnp.asarray(1.0 / np.asarray(standardizer.std), jnp.float32)
  if in_step:
    hparams['mean'] = jnp.asarray(standardizer.mean, jnp.float32)
  return hparams


def input_augment(config: ml_collections.ConfigDict) -> input_augment_lib.InputAugment:
  """`config.input_augment` (absent in older configs: off)."""
  return _settings(input_augment_lib.InputAugment, config.get('input_augment'))


def wave_augment(config: ml_collections.ConfigDict) -> wave_augment_lib.WaveAugment:
  """`config.wave_augment`'s augmentation (absent in older configs: off)."""
  fields = dict(config.get('wave_augment') or {})
  fields.pop('features_in_step', None)
  return _settings(wave_augment_lib.WaveAugment, fields)


def _settings(settings_type, fields):
  """A NamedTuple of settings from config fields, each cast to its default's
  type (a CLI override of a float field may arrive as an int); absent: defaults."""
  defaults = settings_type()
  return settings_type(**{k: type(getattr(defaults, k))(v)
                          for k, v in dict(fields or {}).items()})


def features_in_step(config: ml_collections.ConfigDict) -> bool:
  """Whether the training batches are waveforms, featurised in the step.

  So with any waveform augmentation, or `wave_augment.features_in_step`.
  """
  fields = config.get('wave_augment') or {}
  return bool(fields.get('features_in_step', False)) or wave_augment(config).enabled


def cache_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
  """The feature cache folder: `config.cache_dir` or `<workdir>/../jaxser_cache`."""
  if config.cache_dir:
    return config.cache_dir
  return os.path.join(os.path.dirname(os.path.abspath(workdir)), 'jaxser_cache')


def set_fields(config: ml_collections.ConfigDict, fields: dict) -> None:
  """Sets `config`'s fields in place from `{'dotted.name': value}`."""
  for dotted, value in fields.items():
    *parents, name = dotted.split('.')
    node = config
    for parent in parents:
      node = node[parent]
    node[name] = value


def protocol_options(config: ml_collections.ConfigDict) -> dict:
  """The keywords `protocols.make_folds` takes for the config's protocol."""
  if config.protocol == 'loso':
    # Runs recorded before the field existed ran one order.
    return {'orders': config.get('loso_orders', 'one')}
  return {}


def validate(config: ml_collections.ConfigDict) -> None:
  """Rejects impossible values before any work, naming the field.

  Raises:
    ConfigError: the first bad field found, with its value and why.
  """
  def check(ok, field, why):
    if not ok:
      raise ConfigError(f'config.{field}={config_value(config, field)!r}: {why}')

  check(config.corpus in data_lib.READERS, 'corpus',
        f'unknown corpus (known: {", ".join(data_lib.READERS)})')
  if config.corpus != 'demo':
    check(bool(config.corpus_root), 'corpus_root', 'is required for this corpus')
    check(os.path.exists(config.corpus_root), 'corpus_root', 'does not exist')
  check(config.protocol in protocols.PROTOCOLS, 'protocol',
        f'unknown protocol (known: {", ".join(protocols.PROTOCOLS)})')
  check(config.fold >= 0, 'fold', 'must be >= 0')
  check(config.loso_orders in protocols.LOSO_ORDERS, 'loso_orders',
        f'must be one of {", ".join(protocols.LOSO_ORDERS)}')
  for field in ('seed', 'split_seed', 'demo_seed'):
    check(isinstance(config[field], int) and 0 <= config[field] < 2 ** 32, field,
          'must be an integer in [0, 2**32)')
  check(config.get('demo_recipe', 'v1') in demo_recipes.RECIPES, 'demo_recipe',
        f'must be one of {", ".join(demo_recipes.RECIPES)}')
  check(config.demo_utterances >= 8, 'demo_utterances',
        'the demo corpus needs at least 8 utterances (2 per class)')
  check(config.center_loss_weight >= 0, 'center_loss_weight', 'lambda must be >= 0')
  check(0 < config.center_alpha <= 1, 'center_alpha', 'alpha must be in (0, 1]')
  check(config.center_update in ('ema', 'wen'), 'center_update', "must be 'ema' or 'wen'")
  check(config.warmup_steps >= 0, 'warmup_steps', 'must be >= 0')
  check(config.learning_rate > 0, 'learning_rate', 'must be > 0')
  for field in ('batch_size', 'eval_batch_size', 'num_train_steps',
                'eval_every_steps', 'log_every_steps', 'checkpoint_every_steps'):
    check(config[field] > 0, field, 'must be > 0')
  check(config.eval_start_step >= 0, 'eval_start_step', 'must be >= 0')
  check(config.eval_cadence in ('jaxser', 'code'), 'eval_cadence',
        "must be 'jaxser' or 'code'")
  check(len(config.buckets) > 0 and min(config.buckets) > 0, 'buckets',
        'must be positive frame lengths')
  check(max(config.buckets) >= config.features.max_frames, 'buckets',
        f'the largest bucket must hold config.features.max_frames='
        f'{config.features.max_frames} frames')
  _validate_model(config, check)
  try:
    wave_augment(config).check()
  except ValueError as e:
    raise ConfigError(f'config.{e}') from e
  try:
    data_lib.get_label_map(config.classes)
  except ConfigError as e:
    raise ConfigError(f'config.classes={config.classes!r}: {e}') from e
  bins = feature_params(config).num_bins  # checks every features field
  layers = convs(config)
  check(models.output_length(bins, layers) >= 1, 'model.convs',
        f'leaves no frequency bin of the {bins} input bins; use fewer or '
        'smaller layers, or more bins')
  check(min(config.buckets) >= models.min_frames(layers), 'buckets',
        f'a bucket is shorter than the {models.min_frames(layers)} frames the '
        'model needs for one output step')


def _validate_model(config: ml_collections.ConfigDict, check) -> None:
  """`validate`'s checks of `config.model`'s own fields."""
  check(len(config.model.convs) > 0, 'model.convs', 'needs at least one layer')
  check(config.model.gru_cell in ('flax', 'tf1'), 'model.gru_cell',
        "must be 'flax' or 'tf1'")
  check(config.model.prelu in ('scalar', 'per_unit'), 'model.prelu',
        "must be 'scalar' or 'per_unit'")
  check(config.model.kernel_init in models.KERNEL_INITS, 'model.kernel_init',
        f'must be one of {", ".join(models.KERNEL_INITS)}')
  check(config.model.get('utterance_norm', 'none') in standardize.UTTERANCE_NORMS,
        'model.utterance_norm', f'must be one of {", ".join(standardize.UTTERANCE_NORMS)}')
  for field in ('gru_units', 'embedding_dim'):
    check(config.model[field] > 0, f'model.{field}', 'must be > 0')


def config_value(config, dotted: str):
  value = config
  for part in dotted.split('.'):
    value = value[part]
  return value
