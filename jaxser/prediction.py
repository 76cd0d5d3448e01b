"""What a classifier takes and returns (`Classifier`, an exported model).

`utterance_features` turns the audio given to `classify` into the model's
features, checked as `audio.load` checks files; `predictions` turns the
model's outputs into one `Prediction` per utterance. Neither needs flax.
"""

from typing import NamedTuple, Sequence

import numpy as np

from jaxser import audio
from jaxser import features as features_lib
from jaxser.errors import AudioError

__all__ = ['Prediction', 'predictions', 'utterance_features']


class Prediction(NamedTuple):
  """One utterance's result.

  Attributes:
    label: the most probable class.
    scores: every class' probability, in the model's class order.
    embedding: the embedding z `[dim]` (the centre loss' feature), when
      asked for; else None.
  """
  label: str
  scores: dict[str, float]
  embedding: np.ndarray | None = None


def predictions(classes: Sequence[str], probs: np.ndarray, z: np.ndarray, *,
                embeddings: bool) -> list[Prediction]:
  """One `Prediction` per row of `probs [n, C]` (and `z [n, D]`)."""
  return [Prediction(label=classes[int(np.argmax(p))],
                     scores={c: float(v) for c, v in zip(classes, p)},
                     embedding=e if embeddings else None) for p, e in zip(probs, z)]


def utterance_features(waveform, sampling_rate: int,
                       params: features_lib.FeatureParams) -> tuple[list[np.ndarray], bool]:
  """The features `[frames_i, bins]` of one utterance or a list: `(features, single)`.

  One array (`[samples]` or `[samples, channels]`) is one utterance
  (`single`); a list is several. Each is made 16 kHz mono
  (`audio.from_array`) and cut to the samples its features read.

  Raises:
    AudioError: an utterance is empty, non-finite, below
      `audio.MIN_SAMPLE_RATE`, or its features are not finite (its power
      overflows float32), naming it ('the waveform', 'waveform 3').
  """
  single = isinstance(waveform, np.ndarray) or not isinstance(waveform, Sequence)
  names = ['the waveform'] if single else [f'waveform {i}' for i in range(len(waveform))]
  waves = [features_lib.crop_waveform(audio.from_array(w, sampling_rate, name), params)
           for w, name in zip([waveform] if single else waveform, names)]
  feats = features_lib.extract_numpy(waves, params)
  for name, f, w in zip(names, feats, waves):
    if not np.all(np.isfinite(f)):
      raise AudioError(f'{name}: non-finite features: '
                       f'{features_lib.non_finite_reason(w, params)}', 'non-finite features')
  return feats, single
