"""What one run needs around the training loop: its data, checks, lock, plots.

`prepare(config, workdir)` turns a config into the run's data: the corpus
read and screened, the protocol's fold, features from the on-disk cache, the
class weights and the standardiser of the training split.
"""

import dataclasses
import fcntl
import json
import math
import os
import tempfile

from absl import logging
import ml_collections
import numpy as np

from jaxser import data as data_lib
from jaxser import features as features_lib
from jaxser import input_pipeline
from jaxser import losses
from jaxser import models
from jaxser import parallel
from jaxser import protocols
from jaxser import standardize
from jaxser.data import cache as cache_lib
from jaxser.data import fingerprint
from jaxser import fileio
from jaxser.errors import ConfigError
from jaxser.errors import IdentityError
from jaxser.errors import JaxserError


@dataclasses.dataclass
class RunData:
  """The data of one fold, ready for the input pipeline."""
  label_map: data_lib.LabelMap
  feature_params: features_lib.FeatureParams
  fold_name: str
  utterances: list
  train: input_pipeline.Examples
  dev: input_pipeline.Examples
  test: input_pipeline.Examples
  class_weights: np.ndarray  # [classes]
  standardizer: standardize.Standardizer
  identity: dict  # `run_identity`: what the run's checkpoints mean


def feature_params(config: ml_collections.ConfigDict) -> features_lib.FeatureParams:
  f = config.features
  return features_lib.FeatureParams(
      kind=f.kind, n_fft=f.n_fft, hop_length=f.hop_length,
      win_length=f.win_length, n_mels=f.n_mels, top_db=f.top_db,
      max_frames=f.max_frames)


def cache_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
  if config.cache_dir:
    return config.cache_dir
  return os.path.join(os.path.dirname(os.path.abspath(workdir)), 'jaxser_cache')


def validate_config(config: ml_collections.ConfigDict) -> None:
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
  for field in ('seed', 'split_seed', 'demo_seed'):
    check(isinstance(config[field], int) and 0 <= config[field] < 2 ** 32, field,
          'must be an integer in [0, 2**32)')
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
  check(len(config.buckets) > 0 and min(config.buckets) > 0, 'buckets',
        'must be positive frame lengths')
  check(max(config.buckets) >= config.features.max_frames, 'buckets',
        f'the largest bucket must hold config.features.max_frames='
        f'{config.features.max_frames} frames')
  check(config.features.kind in ('mel', 'stft'), 'features.kind', "must be 'mel' or 'stft'")
  for field in ('n_fft', 'hop_length', 'win_length', 'n_mels', 'max_frames'):
    check(config.features[field] > 0, f'features.{field}', 'must be > 0')
  check(math.isfinite(config.features.top_db) and config.features.top_db > 0,
        'features.top_db', 'the dynamic range must be a finite number of dB > 0')
  check(len(config.model.convs) > 0, 'model.convs', 'needs at least one layer')
  for field in ('gru_units', 'embedding_dim'):
    check(config.model[field] > 0, f'model.{field}', 'must be > 0')
  try:
    data_lib.get_label_map(config.classes)
  except ConfigError as e:
    raise ConfigError(f'config.classes={config.classes!r}: {e}') from e
  try:
    bins = feature_params(config).num_bins
    convs = tuple(models.ConvSpec(*layer) for layer in config.model.convs)
  except (ValueError, TypeError, ConfigError) as e:
    raise ConfigError(f'config: {e}') from e
  check(models.output_length(bins, convs) >= 1, 'model.convs',
        f'leaves no frequency bin of the {bins} input bins; use fewer or '
        'smaller layers, or more bins')
  check(min(config.buckets) >= models.min_frames(convs), 'buckets',
        f'a bucket is shorter than the {models.min_frames(convs)} frames the '
        'model needs for one output step')


def config_value(config, dotted: str):
  value = config
  for part in dotted.split('.'):
    value = value[part]
  return value


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
  params = feature_params(config)
  identity = run_identity(config, utterances, cache_dir(config, workdir))
  feats = cache_lib.FeatureCache.build(utterances, params, cache_dir(config, workdir),
                                       strict=config.strict_data)
  # Items of the cache are the utterances whose audio decoded (the others
  # were reported); folds index them.
  utterances = feats.utterances
  labels = label_map.indices(utterances)
  folds = protocols.make_folds(config.protocol, utterances, labels,
                               seed=config.split_seed)
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

  def examples(indices):
    return input_pipeline.Examples(feats, labels[indices], np.asarray(indices),
                                   standardizer)

  return RunData(label_map=label_map, feature_params=params, fold_name=fold.name,
                 utterances=utterances, train=examples(fold.train),
                 dev=examples(fold.dev), test=examples(fold.test),
                 class_weights=np.asarray(losses.class_weights(counts), np.float32),
                 standardizer=standardizer, identity=identity)


def _check_classes_present(config, label_map, labels: np.ndarray) -> None:
  """Refuses a class map with a class the whole corpus lacks (before features)."""
  counts = np.bincount(labels, minlength=label_map.num_classes)
  empty = [c for c, n in zip(label_map.classes, counts) if n == 0]
  if empty:
    raise ConfigError(f'config.classes={config.classes!r}: corpus {config.corpus!r} '
                      f'has no usable utterance of class {", ".join(empty)}')


def preflight(config: ml_collections.ConfigDict, workdir: str) -> 'WorkdirLock':
  """The checks before any corpus or feature work; returns the workdir's lock.

  Validates the config, creates the workdir and the feature cache folder and
  proves both writable by writing a file in each, then locks the workdir.

  Raises:
    ConfigError: a bad config field.
    JaxserError: a folder that cannot be created or written, or a workdir
      that another run holds.
  """
  validate_config(config)
  ensure_writable(workdir, 'the workdir (--workdir)')
  ensure_writable(cache_dir(config, workdir), 'the feature cache (config.cache_dir)')
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


# Config fields that cannot change what a run computes: a resume or a reused
# run may change them. Every other field is part of the run's identity.
NOT_IDENTITY = ('log_every_steps', 'checkpoint_every_steps', 'plots', 'cache_dir',
                'corpus_root')  # the corpus' content is compared instead


def run_identity(config: ml_collections.ConfigDict, utterances,
                 cache_folder: str) -> dict:
  """Everything that decides what a run's checkpoints and results mean.

  The config's fields that can change a result (data, split, fold, seeds,
  schedule, model, features: all but `NOT_IDENTITY`), and the corpus'
  fingerprint: its utterances' ids, labels, speakers, sessions and audio
  content (`fingerprint.corpus_fingerprint`), not where it lies.

  Args:
    config: the run's config.
    utterances: the corpus as `load_corpus` returns it.
    cache_folder: the feature cache folder (it memoises content hashes).
  """
  values = json.loads(config.to_json_best_effort())
  identity = {k: v for k, v in values.items() if k not in NOT_IDENTITY}
  identity['corpus_content'] = fingerprint.corpus_fingerprint(utterances, cache_folder)
  return identity


def identity_differences(saved: dict | None, current: dict) -> list[str]:
  """`['seed: 0 -> 3', 'features.kind: mel -> stft', ...]`, sorted."""
  if saved is None:
    return ['the run identity (not recorded: made by an older jaxser)']
  flat_saved, flat_current = _flatten(saved), _flatten(current)
  out = []
  for key in sorted(set(flat_saved) | set(flat_current)):
    old, new = flat_saved.get(key, '(none)'), flat_current.get(key, '(none)')
    if old != new:
      out.append("the corpus' utterances or audio changed" if key == 'corpus_content'
                 else f'{key}: {_short(old)} -> {_short(new)}')
  return out


def check_identity(saved: dict | None, current: dict, what: str) -> None:
  """Refuses to reuse `what` when it belongs to a run of another identity.

  Raises:
    IdentityError: one line listing what differs and what to do.
  """
  diffs = identity_differences(saved, current)
  if diffs:
    shown = '; '.join(diffs[:6]) + ('; ...' if len(diffs) > 6 else '')
    raise IdentityError(
        f'{what} belongs to another run ({shown}); use another --workdir, or '
        '--start_over to discard it and train anew')


def _flatten(tree: dict, prefix: str = '') -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = json.dumps(value) if isinstance(value, list) else value
  return out


def _short(value, limit: int = 40) -> str:
  text = str(value)
  return text if len(text) <= limit else text[:limit - 3] + '...'


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


def write_plots(workdir: str, classes, confusion, train_out: dict,
                test_out: dict) -> dict:
  """Confusion matrix, PCA of the embeddings and training curves as PNGs."""
  from jaxser import plots  # pylint: disable=g-import-not-at-top (matplotlib is slow to import)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  return {
      'confusion': plots.confusion(np.asarray(confusion), classes,
                                   os.path.join(workdir, 'confusion.png'),
                                   title='test confusion (row-normalised)'),
      'embeddings': plots.embeddings_pca(
          train_out['embeddings'], train_out['labels'], test_out['embeddings'],
          test_out['labels'], classes, os.path.join(workdir, 'embeddings_pca.png')),
      'curves': plots.training_curves(records, os.path.join(workdir, 'curves.png')),
  }



def load_corpus(config: ml_collections.ConfigDict):
  """The configured corpus: `(utterances, class indices [n], label_map)`."""
  label_map = data_lib.get_label_map(config.classes)
  options = {}
  if config.corpus == 'demo':
    options = dict(num_utterances=config.demo_utterances, seed=config.demo_seed)
  utterances, _ = data_lib.load_corpus(config.corpus, config.corpus_root or None,
                                       label_map=label_map,
                                       strict=config.strict_data, **options)
  return utterances, label_map.indices(utterances), label_map
