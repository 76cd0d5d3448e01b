"""Tests for jaxser.losses: class weights, weighted CE, joint loss, schedule."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxser import center_loss
from jaxser import losses

# An unbalanced batch: three examples of class 0, one of class 2, none of 1.
LOGITS = np.array([[2., 0., -1.], [0.5, 0.5, 0.], [-1., 1., 0.],
                   [0., 0., 3.]], np.float32)
LABELS = np.array([0, 0, 0, 2])
WEIGHTS = np.array([1., 2., 4.], np.float32)


def _ce_by_hand(logits, labels):
  rows = []
  for row, y in zip(logits.astype(np.float64), labels):
    rows.append(np.log(np.sum(np.exp(row))) - row[y])
  return np.array(rows)


def test_class_weights_from_counts():
  w = losses.class_weights([1708, 1103, 1636, 1084])
  np.testing.assert_allclose(
      w, [1708 / 1708.5, 1708 / 1103.5, 1708 / 1636.5, 1708 / 1084.5],
      rtol=1e-6)
  assert w.dtype == jnp.float32
  # A class with no training examples stays finite.
  np.testing.assert_allclose(losses.class_weights(np.array([4, 0])),
                             [4 / 4.5, 8.])


def test_cross_entropy_per_example():
  ce = losses.cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS))
  assert ce.shape == (4,)
  np.testing.assert_allclose(ce, _ce_by_hand(LOGITS, LABELS), rtol=1e-6)


def test_weighted_ce_equals_hand_computation():
  ce = losses.cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS))
  got = losses.class_weighted_mean(ce, jnp.asarray(LABELS), jnp.asarray(WEIGHTS))
  by_hand = _ce_by_hand(LOGITS, LABELS)
  # Equation (1): (1 * (ce0 + ce1 + ce2) + 4 * ce3) / (1 + 1 + 1 + 4).
  expected = (by_hand[0] + by_hand[1] + by_hand[2] + 4 * by_hand[3]) / 7
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  # ...which is not the plain mean on this batch.
  assert abs(float(got) - by_hand.mean()) > 0.1


def test_class_weighted_mean_mask_and_empty():
  values = jnp.array([1., 2., 3., jnp.nan])
  labels = jnp.array([0, 1, 2, 0])
  mask = jnp.array([True, True, True, False])
  got = losses.class_weighted_mean(values, labels, jnp.asarray(WEIGHTS), mask)
  np.testing.assert_allclose(got, (1 + 4 + 12) / 7)
  empty = losses.class_weighted_mean(values, labels, jnp.asarray(WEIGHTS),
                               jnp.zeros(4, bool))
  assert float(empty) == 0.0


def test_joint_loss_is_ce_plus_lambda_center():
  z = jnp.array([[1., 0.], [0., 1.], [1., 1.], [2., 0.]])
  state = center_loss.CenterLossState(jnp.array([[0., 0.], [5., 5.],
                                                 [1., 0.]]))
  total, aux = losses.joint_loss(
      jnp.asarray(LOGITS), z, jnp.asarray(LABELS), state,
      class_weights=jnp.asarray(WEIGHTS), lam=0.3)
  # Squared distances 1, 1, 2 (class 0) and 1 (class 2, weight 4).
  np.testing.assert_allclose(aux['center'], (1 + 1 + 2 + 4 * 1) / 7)
  np.testing.assert_allclose(total, aux['ce'] + 0.3 * aux['center'],
                             rtol=1e-6)
  softmax_only, _ = losses.joint_loss(
      jnp.asarray(LOGITS), z, jnp.asarray(LABELS), state,
      class_weights=jnp.asarray(WEIGHTS), lam=0.0)
  np.testing.assert_allclose(softmax_only, aux['ce'])


def test_center_loss_gradient():
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
  centers = jnp.asarray(rng.normal(size=(3, 3)), jnp.float32)
  labels = jnp.array([0, 2, 2, 1, 0])
  mask = jnp.array([True, True, True, True, False])

  def l_c(z, centers):
    per_example = center_loss.loss(z, labels,
                                   center_loss.CenterLossState(centers))
    return losses.class_weighted_mean(per_example, labels, jnp.asarray(WEIGHTS),
                                mask)

  g_z, g_c = jax.grad(l_c, argnums=(0, 1))(z, centers)
  w = WEIGHTS[np.asarray(labels)] * np.asarray(mask)
  expected = (2 * w[:, None] * (np.asarray(z) - np.asarray(centers)[labels])
              / w.sum())
  np.testing.assert_allclose(g_z, expected, rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(g_z[4], 0.0)  # masked
  np.testing.assert_array_equal(g_c, 0.0)


def test_joint_loss_gives_no_gradient_to_centres():
  state = center_loss.CenterLossState(jnp.ones((3, 2)))
  z = jnp.zeros((4, 2))
  g = jax.grad(lambda s: losses.joint_loss(
      jnp.asarray(LOGITS), z, jnp.asarray(LABELS), s,
      class_weights=jnp.asarray(WEIGHTS), lam=0.3)[0])(state)
  np.testing.assert_array_equal(g.centers, 0.0)


def test_warmup_schedule():
  for step, expected in [(0, (0., 1.)), (19, (0., 1.)), (20, (0.3, 0.5)),
                         (3000, (0.3, 0.5))]:
    np.testing.assert_allclose(losses.warmup_schedule(step), expected,
                               rtol=1e-6)
  steps = jnp.arange(4)
  lam, alpha = jax.jit(lambda s: losses.warmup_schedule(
      s, warmup_steps=2, lam=3.0, alpha=0.1))(steps)
  np.testing.assert_allclose(lam, [0, 0, 3, 3])
  np.testing.assert_allclose(alpha, [1, 1, 0.1, 0.1], rtol=1e-6)
