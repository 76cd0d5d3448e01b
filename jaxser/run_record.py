"""What a checkpoint carries, as one typed record, and a run's identity.

Every checkpoint (and `results.json`) holds a `RunRecord`: the config, the
class names, the feature parameters, the standardiser, the run's identity,
the step, the input iterator's position, the selection so far and the
training metrics since the last log line. `to_json`/`from_json` are the only
place its keys are written; nothing else reads raw keys.

A run's identity (`run_identity`) is everything that decides what its
checkpoints and results mean; a resume, a rerun or a reused crossval run
whose identity differs is refused (`check_identity`), naming what differs.
"""

import dataclasses
import json
from typing import Any

import ml_collections
import numpy as np

from jaxser import features as features_lib
from jaxser import input_augment
from jaxser import wave_augment
from jaxser import standardize
from jaxser.errors import CheckpointError
from jaxser.errors import IdentityError

__all__ = ['NOT_IDENTITY', 'RunRecord', 'check_identity', 'identity_differences',
           'run_identity']


@dataclasses.dataclass(frozen=True)
class RunRecord:
  """What a checkpoint carries besides the arrays: enough to resume or predict.

  Attributes:
    config: the run's config, as JSON (`config_dict()` rebuilds it).
    classes: the class names, in the model's output order.
    features: the feature parameters.
    standardizer: the training split's per-bin statistics.
    identity: `run_identity` of the run.
    step: the training step of the checkpoint.
    iterator: the input iterator's position (None in a best checkpoint).
    best: the selection so far: `{'ua', 'wa', 'step'}` (step None before any).
    train_window: `(step, metrics)` since the last log line, for resuming.
  """
  config: dict
  classes: tuple[str, ...]
  features: features_lib.FeatureParams
  standardizer: standardize.Standardizer
  identity: dict
  step: int
  iterator: Any = None
  best: dict = dataclasses.field(default_factory=lambda: {'ua': -1.0, 'step': None})
  train_window: tuple = ()

  def config_dict(self) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(self.config)

  def to_json(self) -> dict:
    return {
        'config': self.config, 'classes': list(self.classes),
        'features': self.features.to_dict(),
        'standardizer': {'mean': np.asarray(self.standardizer.mean).tolist(),
                         'std': np.asarray(self.standardizer.std).tolist()},
        'identity': self.identity, 'step': int(self.step),
        'iterator': self.iterator, 'best': self.best,
        'train_window': [list(item) for item in self.train_window],
    }

  @classmethod
  def from_json(cls, value: dict, where: str = 'checkpoint') -> 'RunRecord':
    """The record of `to_json`'s output.

    Raises:
      CheckpointError: a field is missing or malformed, naming `where`.
    """
    try:
      return cls(
          config=value['config'], classes=tuple(value['classes']),
          features=features_lib.FeatureParams(**value['features']),
          standardizer=standardize.Standardizer(
              np.asarray(value['standardizer']['mean'], np.float32),
              np.asarray(value['standardizer']['std'], np.float32)),
          identity=value.get('identity'), step=int(value['step']),
          iterator=value.get('iterator'), best=value['best'],
          train_window=tuple(tuple(item) for item in value.get('train_window', ())))
    except (KeyError, TypeError, ValueError) as e:
      raise CheckpointError(f'{where}: its record is incomplete or malformed '
                            f'({type(e).__name__}: {e})') from e


# Config fields that cannot change what a run computes: a resume or a reused
# run may change them. Every other field is part of the run's identity.
NOT_IDENTITY = ('log_every_steps', 'checkpoint_every_steps', 'plots', 'cache_dir',
                'corpus_root',  # the corpus' content is compared instead
                'augment')  # what `jaxser.augment` does after training


def run_identity(config: ml_collections.ConfigDict, corpus_content: str) -> dict:
  """Everything that decides what a run's checkpoints and results mean.

  The config's fields that can change a result (data, split, fold, seeds,
  schedule, model, features: all but `NOT_IDENTITY`), and the corpus'
  fingerprint: its utterances' ids, labels, speakers, sessions and audio
  content (`fingerprint.corpus_fingerprint`), not where it lies.

  Args:
    config: the run's config.
    corpus_content: `fingerprint.corpus_fingerprint` of the corpus as
      `load_corpus` returns it (computed once by callers with many runs).
  """
  values = json.loads(config.to_json_best_effort())
  identity = {k: v for k, v in values.items() if k not in NOT_IDENTITY}
  identity['corpus_content'] = corpus_content
  return identity


# Fields added after runs were recorded without them, and the value such a
# record means: the behaviour before the field existed.
ABSENT_MEANS = {'model.utterance_norm': 'none', 'demo_recipe': 'v1',
                'wave_augment.features_in_step': False,
                **{f'input_augment.{k}': v
                   for k, v in input_augment.InputAugment()._asdict().items()},
                **{f'wave_augment.{k}': v
                   for k, v in wave_augment.WaveAugment()._asdict().items()}}


def identity_differences(saved: dict | None, current: dict) -> list[str]:
  """`['seed: 0 -> 3', 'features.kind: mel -> stft', ...]`, sorted.

  A field a saved identity lacks counts as `ABSENT_MEANS`' value.
  """
  if saved is None:
    return ['the run identity (not recorded: made by an older jaxser)']
  flat_saved, flat_current = _flatten(saved), _flatten(current)
  out = []
  for key in sorted(set(flat_saved) | set(flat_current)):
    old = flat_saved.get(key, ABSENT_MEANS.get(key, '(none)'))
    new = flat_current.get(key, '(none)')
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
