"""A trained run as an emotion classifier: audio in, labels and scores out.

  from jaxser import Classifier
  classifier = Classifier.from_workdir('workdir/demo')
  classifier.classify_file('clip.wav')    # Prediction(label='angry', scores={...})
  classifier.classify(samples, sampling_rate=44100)   # one array, or a list

The selected checkpoint of a workdir (the best dev UA; the latest if no dev
evaluation ran) with the feature parameters and the standardiser saved in it.
Audio is taken as `jaxser.audio.load` takes files: channels (`[samples,
channels]`) mixed down, any rate of at least `audio.MIN_SAMPLE_RATE`
resampled to 16 kHz, and each utterance cut to the samples its features read
(`features.crop_waveform`). Batches are split over this process's devices
(`jax.local_devices()`), so a batch size must divide by their number.
"""

import jax
import numpy as np

from jaxser import audio
from jaxser import evaluate
from jaxser import features as features_lib
from jaxser import input_pipeline
from jaxser import parallel
from jaxser import prediction
from jaxser.prediction import Prediction
from jaxser.errors import AudioError
from jaxser.errors import ConfigError

__all__ = ['Classifier', 'Prediction', 'check_batch_size']


def check_batch_size(batch_size: int, mesh, what: str = 'batch_size') -> None:
  """Refuses a batch size the batches cannot have.

  Raises:
    ConfigError: `batch_size` is below 1 (no batch would run, and nothing
      would be predicted) or does not divide by the devices of `mesh`.
  """
  if batch_size < 1:
    raise ConfigError(f'{what}={batch_size}: must be at least 1')
  parallel.check_divisible(batch_size, mesh, what)


class Classifier:
  """A restored model with its features and standardiser.

  Attributes:
    classes: the class names, in the order of the scores.
    params: the feature parameters the model was trained with.
    config: the run's config.
  """

  def __init__(self, workdir: str):
    """Restores the selected checkpoint of `workdir` (`from_workdir`).

    Raises:
      CheckpointError: no (complete) checkpoint that this code can restore.
    """
    record, state = evaluate.restore_selected(workdir)
    self.config = record.config_dict()
    self.classes = list(record.classes)
    self.params = record.features
    self.standardizer = record.standardizer
    self.mesh = parallel.make_mesh(jax.local_devices())
    self.state = parallel.replicate(state, self.mesh)
    self._eval = evaluate.make_eval_step(self.mesh)

  @classmethod
  def from_workdir(cls, workdir: str) -> 'Classifier':
    """The classifier of a trained workdir (`jaxser.main`'s `--workdir`)."""
    return cls(workdir)

  def classify(self, waveform, sampling_rate: int, *, embeddings: bool = False,
               batch_size: int = 32):
    """Classifies one utterance or a list of them.

    Args:
      waveform: one utterance (`[samples]` or `[samples, channels]` float
        samples, nominally within [-1, 1]), or a list of them.
      sampling_rate: their rate in Hz (all of a list's), resampled to the
        model's 16 kHz.
      embeddings: also return each utterance's embedding z.
      batch_size: utterances per batch (divisible by the local devices).

    Returns:
      A `Prediction`, or a list of them in the order given.

    Raises:
      AudioError: an utterance is empty, has non-finite samples or a rate
        below `audio.MIN_SAMPLE_RATE`, or its features are not finite (its
        power overflows float32); the message says which utterance.
      ConfigError: a bad batch size.
      ValueError: a sampling rate that is not a positive int.
    """
    check_batch_size(batch_size, self.mesh)
    feats, single = prediction.utterance_features(waveform, sampling_rate, self.params)
    probs, z = self.predict_features(feats, batch_size)
    out = prediction.predictions(self.classes, probs, z, embeddings=embeddings)
    return out[0] if single else out

  def classify_file(self, path, *, embeddings: bool = False) -> Prediction:
    """Classifies an audio file (read by `audio.load`: any rate, any channels).

    Raises:
      AudioError: the file cannot be read (`audio.load`) or its features are
        not finite.
    """
    wave = audio.load(path)
    try:
      # One row per device: the smallest batch every device count divides.
      return self.classify(wave, audio.SAMPLE_RATE, embeddings=embeddings,
                           batch_size=self.mesh.devices.size)
    except AudioError as e:
      raise AudioError(f'{path}: {str(e).split(": ", 1)[1]}', e.kind) from e

  def features(self, waveforms) -> list[np.ndarray]:
    """The model's features `[frames_i, bins]` of 16 kHz mono waveforms."""
    return features_lib.extract_numpy(waveforms, self.params)

  def predict_features(self, feats: list[np.ndarray], batch_size: int):
    """`(probs [n, classes], embeddings [n, dim])` float32 of features, in order.

    A row whose model outputs are not finite stays non-finite: check with
    `np.isfinite`.
    """
    check_batch_size(batch_size, self.mesh)
    if not feats:  # no batch runs: empty outputs of the right widths
      return (np.zeros((0, len(self.classes)), np.float32),
              np.zeros((0, self.config.model.embedding_dim), np.float32))
    examples = input_pipeline.Examples(feats, np.zeros(len(feats), np.int32),
                                       np.arange(len(feats)), self.standardizer)
    out = evaluate.outputs(self._eval, self.state, examples, batch_size=batch_size,
                           buckets=self.config.buckets, mesh=self.mesh,
                           every_process=False)
    return np.asarray(jax.nn.softmax(out['logits'])), out['embeddings']
