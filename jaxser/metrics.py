"""Confusion matrices, UA, WA and macro-F1.

UA (unweighted accuracy) is the mean per-class recall over the classes present
(balanced accuracy); WA (weighted accuracy) is the plain accuracy; macro-F1
is the mean per-class F1, as toolkits such as EmoBox report beside them. Every
function takes NumPy or JAX arrays and is jit-friendly; the confusion matrix
is the one thing computed from predictions, the rest read it.
"""

import chex
import jax
import jax.numpy as jnp

__all__ = ['confusion_matrix', 'macro_f1', 'per_class_recall', 'row_normalise',
           'unweighted_accuracy', 'weighted_accuracy']


def confusion_matrix(labels, predictions, num_classes: int,
                     mask=None) -> jax.Array:
  """Counts of (true class, predicted class) pairs.

  Args:
    labels: `[batch]` int true classes.
    predictions: `[batch]` int predicted classes.
    num_classes: number of classes.
    mask: `[batch]` bool, False for padding examples; None means all valid.

  Returns:
    `[num_classes, num_classes]` int32 counts; rows are true classes.
  """
  labels = jnp.asarray(labels, jnp.int32)
  predictions = jnp.asarray(predictions, jnp.int32)
  chex.assert_rank(labels, 1)
  chex.assert_equal_shape((labels, predictions))
  weights = (jnp.ones(labels.shape, jnp.int32) if mask is None else
             jnp.asarray(mask).astype(jnp.int32))
  counts = jnp.zeros((num_classes, num_classes), jnp.int32)
  return counts.at[labels, predictions].add(weights, mode='drop')


def _safe_divide(numerator, denominator):
  """`numerator / denominator`, 0 where the denominator is 0."""
  return numerator / jnp.where(denominator > 0, denominator, 1)


def _mean_where(values, present):
  """The mean of `values` over the classes where `present`; 0 where none is."""
  return _safe_divide(jnp.sum(jnp.where(present, values, 0.0)),
                      jnp.sum(present).astype(jnp.float32))


def row_normalise(cm) -> jax.Array:
  """Each row divided by its sum; rows with no examples are all zeros.

  Args:
    cm: `[C, C]` confusion counts, rows = true classes.

  Returns:
    `[C, C]` float32 row-normalised confusion matrix.
  """
  cm = jnp.asarray(cm, jnp.float32)
  chex.assert_rank(cm, 2)
  return _safe_divide(cm, jnp.sum(cm, axis=1, keepdims=True))


def per_class_recall(cm) -> jax.Array:
  """Recall of each class, `cm[j, j] / sum_k cm[j, k]`; 0 for absent classes.

  Args:
    cm: `[C, C]` confusion counts, rows = true classes.

  Returns:
    `[C]` float32 recalls.
  """
  return jnp.diagonal(row_normalise(cm))


def unweighted_accuracy(cm) -> jax.Array:
  """UA: mean per-class recall over the classes with at least one example.

  Args:
    cm: `[C, C]` confusion counts, rows = true classes.

  Returns:
    A float32 scalar; 0 for an empty matrix.
  """
  return _mean_where(per_class_recall(cm), jnp.sum(jnp.asarray(cm), axis=1) > 0)


def weighted_accuracy(cm) -> jax.Array:
  """WA: the fraction of examples classified correctly.

  Args:
    cm: `[C, C]` confusion counts, rows = true classes.

  Returns:
    A float32 scalar; 0 for an empty matrix.
  """
  cm = jnp.asarray(cm, jnp.float32)
  chex.assert_rank(cm, 2)
  return _safe_divide(jnp.trace(cm), jnp.sum(cm))


def macro_f1(cm) -> jax.Array:
  """Macro-F1: the mean over classes of `2 TP / (2 TP + FP + FN)`.

  The mean is over the classes that occur as a true or a predicted class,
  and a class predicted but never true (or true but never predicted) has F1
  0: scikit-learn's `f1_score(y_true, y_pred, average='macro')`.

  Args:
    cm: `[C, C]` confusion counts, rows = true classes.

  Returns:
    A float32 scalar; 0 for an empty matrix.
  """
  cm = jnp.asarray(cm, jnp.float32)
  chex.assert_rank(cm, 2)
  tp = jnp.diagonal(cm)
  true, predicted = jnp.sum(cm, axis=1), jnp.sum(cm, axis=0)
  return _mean_where(_safe_divide(2 * tp, true + predicted), (true + predicted) > 0)
