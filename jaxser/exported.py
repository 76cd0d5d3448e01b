"""Runs a model exported by `jaxser export`, with jax and numpy alone.

  from jaxser import exported
  model = exported.load('model.jaxser')
  model.classify_file('clip.wav')        # Prediction(label='angry', scores={...})

No config, no flax, no checkpoint library and none of the training code is
imported: the programs are StableHLO (`jax.export`), and the features are
`jaxser.features`' (plain JAX), computed with the parameters saved in the
file. The results equal `jaxser.Classifier`'s on the source run (tested to
1e-5).
"""

import json
import zipfile

import jax
from jax import export as jax_export
import numpy as np

from jaxser import audio
from jaxser import features as features_lib
from jaxser import prediction

__all__ = ['ExportedModel', 'load']

FORMAT = 'jaxser-exported-v1'  # jaxser.export.FORMAT (not imported: it needs flax)


def load(path) -> 'ExportedModel':
  """The exported model in `path`.

  Raises:
    ValueError: not a jaxser export (or another format version).
  """
  return ExportedModel(path)


class ExportedModel:
  """An exported run's inference.

  Attributes:
    classes: the class names, in the order of the scores.
    buckets: the padded lengths (frames) there is a program for.
    meta: everything `meta.json` says (source run, versions, platforms).
  """

  def __init__(self, path):
    try:
      with zipfile.ZipFile(path) as z:
        self.meta = json.loads(z.read('meta.json'))
        if self.meta.get('format') != FORMAT:
          raise ValueError(f'{path}: format {self.meta.get("format")!r}, '
                           f'expected {FORMAT!r}')
        self._programs = {t: jax_export.deserialize(bytearray(z.read(f'bucket_{t}.stablehlo')))
                          for t in self.meta['buckets']}
    except (zipfile.BadZipFile, KeyError) as e:
      raise ValueError(f'{path}: not a jaxser exported model ({e})') from e
    self.classes = list(self.meta['classes'])
    self.buckets = sorted(self._programs)

  def predict_features(self, features, batch_size: int = 32):
    """`(probs [n, classes], embeddings [n, dim])` of `[frames_i, bins]` features."""
    n, dim = len(features), self.meta['embedding_dim']
    probs = np.zeros((n, len(self.classes)), np.float32)
    z = np.zeros((n, dim), np.float32)
    lengths = np.array([len(f) for f in features], np.int32)
    if n and lengths.max() > self.buckets[-1]:
      raise ValueError(f'features of {lengths.max()} frames: longer than the '
                       f'largest bucket, {self.buckets[-1]}')
    bucket_of = np.searchsorted(self.buckets, lengths)
    for b, frames in enumerate(self.buckets):
      rows = np.flatnonzero(bucket_of == b)
      for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        batch = np.zeros((len(chunk), frames, features[chunk[0]].shape[-1]), np.float32)
        for i, row in enumerate(chunk):
          batch[i, :lengths[row]] = features[row]
        p, e = self._programs[frames].call(batch, lengths[chunk])
        probs[chunk], z[chunk] = jax.device_get(p), jax.device_get(e)
    return probs, z

  def classify(self, waveform, sampling_rate: int, *, embeddings: bool = False):
    """One utterance (`[samples]` or `[samples, channels]`) or a list of them.

    Returns:
      A `Prediction` (label, scores, embedding), or a list of them.

    Raises:
      AudioError: as `Classifier.classify`: bad samples or non-finite
        features, naming the utterance.
    """
    feats, single = prediction.utterance_features(
        waveform, sampling_rate, features_lib.FeatureParams(**self.meta['features']))
    probs, z = self.predict_features(feats)
    out = prediction.predictions(self.classes, probs, z, embeddings=embeddings)
    return out[0] if single else out

  def classify_file(self, path, *, embeddings: bool = False):
    """Classifies an audio file (read by `jaxser.audio.load`)."""
    return self.classify(audio.load(path), audio.SAMPLE_RATE, embeddings=embeddings)
