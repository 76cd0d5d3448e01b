"""What a classifier returns for one utterance (`Classifier`, an exported model)."""

from typing import NamedTuple, Sequence

import numpy as np

__all__ = ['Prediction', 'predictions']


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
