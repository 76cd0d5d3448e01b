"""jaxser: speech emotion recognition from spectrograms with the centre loss.

A JAX/Flax reimplementation of Dai et al., "Learning Discriminative Features
from Spectrograms Using Center Loss for Speech Emotion Recognition"
(ICASSP 2019).
"""

__version__ = '0.1.0'
