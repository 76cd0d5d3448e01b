"""A run's data: the corpus read and screened, the fold, features, weights.

`prepare(config, workdir)` turns a config into the `RunData` of one fold:
the corpus (`load_corpus`), the run's identity, the protocol's fold, the
features from the on-disk cache, the class weights and the standardiser of
the training split. With the features computed in the train step
(`config_lib.features_in_step`), the training batches read cached waveforms
(`RunData.train_input`); evaluation keeps the feature cache.
"""

import dataclasses

from absl import logging
import ml_collections
import numpy as np

from jaxser import config_lib
from jaxser import data as data_lib
from jaxser import features as features_lib
from jaxser import input_pipeline
from jaxser import losses
from jaxser import parallel
from jaxser import protocols
from jaxser import run_record
from jaxser import standardize
from jaxser.data import cache as cache_lib
from jaxser.data import fingerprint
from jaxser.errors import ConfigError
from jaxser.errors import CorpusError

__all__ = ['RunData', 'load_corpus', 'prepare']


@dataclasses.dataclass
class RunData:
  """The data of one fold, ready for the input pipeline."""
  label_map: data_lib.LabelMap
  feature_params: features_lib.FeatureParams
  fold_name: str
  utterances: list
  train: input_pipeline.Examples
  train_input: input_pipeline.Examples  # `train` as the train step reads it:
                                        # cached features, or waveforms
  dev: input_pipeline.Examples
  test: input_pipeline.Examples
  class_weights: np.ndarray  # [classes]
  standardizer: standardize.Standardizer
  identity: dict  # `run_identity`: what the run's checkpoints mean


def prepare(config: ml_collections.ConfigDict, workdir: str) -> RunData:
  """Reads the corpus, makes the fold, loads features, fits the standardiser.

  In a multi-process run, process 0 goes first (it may synthesise the demo
  corpus and fill the feature cache) and the others follow once it is done,
  finding both ready when they share its file system.
  """
  if not parallel.is_chief():
    parallel.sync('jaxser.prepare')
  data = _prepare(config, workdir)
  if parallel.is_chief():
    parallel.sync('jaxser.prepare')
  return data


def _prepare(config: ml_collections.ConfigDict, workdir: str) -> RunData:
  utterances, labels, label_map = load_corpus(config)
  _check_classes_present(config, label_map, labels)
  params = config_lib.feature_params(config)
  cache_folder = config_lib.cache_dir(config, workdir)
  identity = run_record.run_identity(
      config, fingerprint.corpus_fingerprint(utterances, cache_folder))
  feats = cache_lib.FeatureCache.build(utterances, params, cache_folder,
                                       strict=config.strict_data)
  # Items of the cache are the utterances whose audio decoded (the others
  # were reported); folds index them.
  utterances = feats.utterances
  labels = label_map.indices(utterances)
  folds = protocols.make_folds(config.protocol, utterances, labels,
                               seed=config.split_seed,
                               **config_lib.protocol_options(config))
  if config.fold >= len(folds):
    raise ConfigError(f'config.fold={config.fold}: protocol {config.protocol!r} '
                      f'has {len(folds)} folds on this corpus')
  fold = folds[config.fold]
  counts = np.bincount(labels[fold.train], minlength=label_map.num_classes)
  if np.any(counts == 0):
    empty = [c for c, n in zip(label_map.classes, counts) if n == 0]
    raise ConfigError(f'config.classes={config.classes!r}: no training utterance '
                      f'of class {", ".join(empty)} in fold {fold.name}')
  standardizer = standardize.fit_standardizer(feats[int(i)] for i in fold.train)
  logging.info('fold %s: %d train, %d dev, %d test; train counts %s',
               fold.name, len(fold.train), len(fold.dev), len(fold.test),
               dict(zip(label_map.classes, counts.tolist())))

  def examples(indices, items=feats, wave=None):
    return input_pipeline.Examples(items, labels[indices], np.asarray(indices),
                                   standardizer, wave)

  train = train_input = examples(fold.train)
  if config_lib.features_in_step(config):
    train_input = examples(fold.train, _waveforms(feats, cache_folder, config.strict_data),
                           params)
  return RunData(label_map=label_map, feature_params=params, fold_name=fold.name,
                 utterances=utterances, train=train, train_input=train_input,
                 dev=examples(fold.dev), test=examples(fold.test),
                 class_weights=np.asarray(losses.class_weights(counts), np.float32),
                 standardizer=standardizer, identity=identity)


def _waveforms(feats: cache_lib.FeatureCache, cache_folder: str, strict: bool
               ) -> cache_lib.FeatureCache:
  """The waveform cache of the feature cache's utterances, item for item."""
  waves = cache_lib.FeatureCache.build(feats.utterances, feats.params, cache_folder,
                                       strict=strict, waveforms=True)
  if waves.ids != feats.ids:
    lost = sorted(set(feats.ids) - set(waves.ids))
    raise CorpusError(f'waveform cache {waves.folder}: {len(lost)} utterances with '
                      f'features have no waveform (first {lost[:1]}): see the warnings')
  return waves


def _check_classes_present(config, label_map, labels: np.ndarray) -> None:
  """Refuses a class map with a class the whole corpus lacks (before features)."""
  counts = np.bincount(labels, minlength=label_map.num_classes)
  empty = [c for c, n in zip(label_map.classes, counts) if n == 0]
  if empty:
    raise ConfigError(f'config.classes={config.classes!r}: corpus {config.corpus!r} '
                      f'has no usable utterance of class {", ".join(empty)}')


def load_corpus(config: ml_collections.ConfigDict):
  """The configured corpus: `(utterances, class indices [n], label_map)`."""
  label_map = data_lib.get_label_map(config.classes)
  options = {}
  if config.corpus == 'demo':
    options = dict(num_utterances=config.demo_utterances, seed=config.demo_seed,
                   recipe=config.get('demo_recipe', 'v1'))
  utterances, _ = data_lib.load_corpus(config.corpus, config.corpus_root or None,
                                       label_map=label_map,
                                       strict=config.strict_data, **options)
  return utterances, label_map.indices(utterances), label_map
