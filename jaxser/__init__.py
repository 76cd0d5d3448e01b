"""jaxser: speech emotion recognition from spectrograms with the centre loss.

A JAX/Flax reimplementation of Dai et al., "Learning Discriminative Features
from Spectrograms Using Center Loss for Speech Emotion Recognition"
(ICASSP 2019).
"""

__version__ = '0.1.0'

__all__ = ['Classifier', 'Prediction', '__version__']


def __getattr__(name):
  # Imported on first use: `import jaxser.center_loss` stays free of flax,
  # librosa and orbax (the classifier needs them all).
  if name == 'Classifier':
    from jaxser import classifier  # pylint: disable=g-import-not-at-top
    return classifier.Classifier
  if name == 'Prediction':
    from jaxser import prediction  # pylint: disable=g-import-not-at-top
    return prediction.Prediction
  raise AttributeError(f'module jaxser has no attribute {name!r}')
