"""Tests for jaxser.metrics on hand-made predictions."""

import jax
import hypothesis
from hypothesis import strategies as st
import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.metrics

from jaxser import metrics

# 4 classes; class 3 never occurs. Class 0: 3 of 4 right; class 1: 1 of 2;
# class 2: 0 of 1 (predicted 0).
LABELS = np.array([0, 0, 0, 0, 1, 1, 2])
PREDS = np.array([0, 0, 0, 1, 1, 3, 0])
CM = np.array([[3, 1, 0, 0],
               [0, 1, 0, 1],
               [1, 0, 0, 0],
               [0, 0, 0, 0]])


@pytest.mark.parametrize('xp', [np, jnp])
def test_confusion_matrix(xp):
  cm = metrics.confusion_matrix(xp.asarray(LABELS), xp.asarray(PREDS), 4)
  np.testing.assert_array_equal(cm, CM)


def test_confusion_matrix_mask():
  labels = np.concatenate([LABELS, [2, 3]])
  preds = np.concatenate([PREDS, [2, 3]])
  mask = np.arange(9) < 7
  cm = metrics.confusion_matrix(labels, preds, 4, mask=mask)
  np.testing.assert_array_equal(cm, CM)
  jitted = jax.jit(metrics.confusion_matrix, static_argnums=2)(
      labels, preds, 4, mask)
  np.testing.assert_array_equal(jitted, CM)


@pytest.mark.parametrize('xp', [np, jnp])
def test_rates(xp):
  cm = xp.asarray(CM)
  np.testing.assert_allclose(metrics.per_class_recall(cm),
                             [0.75, 0.5, 0.0, 0.0])
  # UA over the three classes present: (0.75 + 0.5 + 0) / 3.
  np.testing.assert_allclose(metrics.unweighted_accuracy(cm), 1.25 / 3,
                             rtol=1e-6)
  np.testing.assert_allclose(metrics.weighted_accuracy(cm), 4 / 7, rtol=1e-6)


def test_row_normalise_has_zero_rows_not_nan():
  normalised = metrics.row_normalise(CM)
  np.testing.assert_allclose(normalised, [[0.75, 0.25, 0, 0], [0, 0.5, 0, 0.5],
                                          [1, 0, 0, 0], [0, 0, 0, 0]])
  assert np.isfinite(np.asarray(normalised)).all()


def test_empty_matrix():
  empty = np.zeros((4, 4), np.int32)
  assert float(metrics.unweighted_accuracy(empty)) == 0.0
  assert float(metrics.weighted_accuracy(empty)) == 0.0


def test_ua_differs_from_wa_on_unbalanced_classes():
  # Always predicting the majority class: WA is high, UA is chance.
  labels = np.array([0] * 8 + [1] * 2)
  cm = metrics.confusion_matrix(labels, np.zeros(10, int), 2)
  np.testing.assert_allclose(metrics.weighted_accuracy(cm), 0.8)
  np.testing.assert_allclose(metrics.unweighted_accuracy(cm), 0.5)


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(pairs=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)),
                                 min_size=1, max_size=60))
def test_macro_f1_is_scikit_learns(pairs):
  y_true, y_pred = map(np.asarray, zip(*pairs))
  cm = metrics.confusion_matrix(y_true, y_pred, 5)
  want = sklearn.metrics.f1_score(y_true, y_pred, average='macro', zero_division=0)
  np.testing.assert_allclose(float(metrics.macro_f1(cm)), want, rtol=1e-6, atol=1e-7)


def test_macro_f1_by_hand():
  # Class 0: TP 3, FP 1, FN 1 -> 0.75; class 1: TP 1, FP 1, FN 1 -> 0.5;
  # class 2 never occurs: left out of the mean.
  cm = np.array([[3, 1, 0], [1, 1, 0], [0, 0, 0]])
  assert float(metrics.macro_f1(cm)) == pytest.approx(0.625)
  assert float(metrics.macro_f1(np.zeros((3, 3)))) == 0.0
