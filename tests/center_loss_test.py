"""Tests for jaxser.center_loss: exact update rules and gradients."""

import functools

import chex
from hypothesis import given, settings, strategies as st
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxser import center_loss

# Three classes in two dimensions; class 2 is absent from the batch.
CENTERS = np.array([[1., 0.], [0., 2.], [5., 5.]], np.float32)
Z = np.array([[3., 0.], [1., 2.], [0., 4.], [2., 6.]], np.float32)
LABELS = np.array([0, 0, 1, 1])


def _state(centers=CENTERS):
  return center_loss.CenterLossState(centers=jnp.asarray(centers))


def test_init_is_zeros():
  state = center_loss.init(4, 64)
  assert isinstance(state, tuple) and state.centers.shape == (4, 64)
  assert not np.asarray(state.centers).any()


def test_loss_is_squared_distance_without_half():
  per_example = center_loss.loss(jnp.asarray(Z), jnp.asarray(LABELS), _state())
  # z - c: (2, 0), (0, 2), (0, 2), (2, 4)
  np.testing.assert_allclose(per_example, [4., 4., 4., 20.])


def test_class_sums_and_counts():
  sums, counts = center_loss._class_sums(
      jnp.asarray(Z), jnp.asarray(LABELS), jnp.array([1, 1, 0, 1], bool), 3)
  np.testing.assert_array_equal(sums, [[4., 2.], [2., 6.], [0., 0.]])
  np.testing.assert_array_equal(counts, [2., 1., 0.])


def test_ema_update_hand_computed():
  new = center_loss.update(_state(), jnp.asarray(Z), jnp.asarray(LABELS),
                           alpha=0.25)
  # Batch means: class 0 (2, 1), class 1 (1, 5); class 2 absent.
  # c0 = 0.75 * (1, 0) + 0.25 * (2, 1) = (1.25, 0.25)
  # c1 = 0.75 * (0, 2) + 0.25 * (1, 5) = (0.25, 2.75)
  np.testing.assert_allclose(new.centers,
                             [[1.25, 0.25], [0.25, 2.75], [5., 5.]])


def test_wen_update_hand_computed():
  new = center_loss.update(_state(), jnp.asarray(Z), jnp.asarray(LABELS),
                           alpha=0.5, rule='wen')
  # c0: sum (c0 - z_i) = (-2, 0) + (0, -2) = (-2, -2); n = 2
  #     c0 - 0.5 * (-2, -2) / 3 = (1 + 1/3, 1/3)
  # c1: sum (c1 - z_i) = (0, -2) + (-2, -4) = (-2, -6)
  #     c1 - 0.5 * (-2, -6) / 3 = (1/3, 3)
  np.testing.assert_allclose(new.centers,
                             [[4 / 3, 1 / 3], [1 / 3, 3.], [5., 5.]],
                             rtol=1e-6)


def test_alpha_one_takes_the_batch_means():
  new = center_loss.update(_state(), jnp.asarray(Z), jnp.asarray(LABELS),
                           alpha=1.0)
  np.testing.assert_allclose(new.centers, [[2., 1.], [1., 5.], [5., 5.]])


@pytest.mark.parametrize('rule', ['ema', 'wen'])
def test_masked_examples_are_ignored(rule):
  # Padding rows with huge values and any labels must change nothing.
  z = np.concatenate([Z, np.full((3, 2), 1e6, np.float32)])
  labels = np.concatenate([LABELS, [0, 1, 2]])
  mask = np.arange(7) < 4
  masked = center_loss.update(_state(), jnp.asarray(z), jnp.asarray(labels),
                              alpha=0.3, mask=jnp.asarray(mask), rule=rule)
  plain = center_loss.update(_state(), jnp.asarray(Z), jnp.asarray(LABELS),
                             alpha=0.3, rule=rule)
  np.testing.assert_allclose(masked.centers, plain.centers, rtol=1e-6)
  np.testing.assert_array_equal(masked.centers[2], CENTERS[2])


@pytest.mark.parametrize('rule', ['ema', 'wen'])
def test_all_masked_changes_nothing(rule):
  new = center_loss.update(_state(), jnp.asarray(Z), jnp.asarray(LABELS),
                           alpha=0.5, mask=jnp.zeros(4, bool), rule=rule)
  np.testing.assert_array_equal(new.centers, CENTERS)


def test_unknown_rule_is_an_error():
  with pytest.raises(ValueError, match='rule'):
    center_loss.update(_state(), jnp.asarray(Z), jnp.asarray(LABELS),
                       alpha=0.5, rule='sgd')


# One jitted update per rule, traced once for every alpha, mask and batch of
# the same shape (alpha is an argument, not a constant).
@functools.partial(jax.jit, static_argnames='rule')
@chex.assert_max_traces(n=2)
def _jit_update(state, z, labels, mask, alpha, rule):
  return center_loss.update(state, z, labels, alpha=alpha, mask=mask,
                            rule=rule)


_FLOATS = st.floats(-10, 10, width=32, allow_subnormal=False)


@settings(max_examples=25, deadline=None)
@given(
    z=hnp.arrays(np.float32, (6, 3), elements=_FLOATS),
    labels=hnp.arrays(np.int32, (6,), elements=st.integers(0, 3)),
    mask=hnp.arrays(np.bool_, (6,)),
    centers=hnp.arrays(np.float32, (4, 3), elements=_FLOATS),
    alpha=st.floats(0, 1),
    rule=st.sampled_from(['ema', 'wen']),
    seed=st.integers(0, 2**31 - 1),
)
def test_update_independent_of_order_and_jit(z, labels, mask, centers, alpha,
                                             rule, seed):
  state = _state(centers)
  alpha = np.float32(alpha)
  new = center_loss.update(state, jnp.asarray(z), jnp.asarray(labels),
                           alpha=alpha, mask=jnp.asarray(mask), rule=rule)
  perm = np.random.default_rng(seed).permutation(6)
  permuted = _jit_update(state, jnp.asarray(z[perm]), jnp.asarray(labels[perm]),
                         jnp.asarray(mask[perm]), alpha, rule)
  np.testing.assert_allclose(permuted.centers, new.centers, rtol=1e-5,
                             atol=1e-5)
  jitted = _jit_update(state, jnp.asarray(z), jnp.asarray(labels),
                       jnp.asarray(mask), alpha, rule)
  np.testing.assert_allclose(jitted.centers, new.centers, rtol=1e-6,
                             atol=1e-6)
  # Classes with no unmasked example keep their centres exactly.
  present = np.bincount(labels[mask], minlength=4) > 0
  np.testing.assert_array_equal(np.asarray(new.centers)[~present],
                                centers[~present])


def test_update_under_vmap_with_axis_name_uses_the_global_batch():
  # Two "devices" each hold half the batch; psum over the mapped axis gives
  # the same centres as one update on the whole batch.
  halves = jax.vmap(
      lambda z, y: center_loss.update(_state(), z, y, alpha=0.25,
                                      axis_name='data').centers,
      axis_name='data')(jnp.asarray(Z[[0, 2, 1, 3]]).reshape(2, 2, 2),
                        jnp.asarray(LABELS[[0, 2, 1, 3]]).reshape(2, 2))
  whole = center_loss.update(_state(), jnp.asarray(Z), jnp.asarray(LABELS),
                             alpha=0.25)
  np.testing.assert_allclose(halves[0], whole.centers)
  np.testing.assert_allclose(halves[1], whole.centers)


def test_no_gradient_into_centres():
  def total(centers, z):
    state = center_loss.CenterLossState(centers)
    return jnp.sum(center_loss.loss(z, jnp.asarray(LABELS), state))

  g_centers, g_z = jax.grad(total, argnums=(0, 1))(jnp.asarray(CENTERS),
                                                   jnp.asarray(Z))
  np.testing.assert_array_equal(g_centers, np.zeros_like(CENTERS))
  np.testing.assert_allclose(g_z, 2 * (Z - CENTERS[LABELS]))


def test_update_takes_no_gradient_from_embeddings():
  def moved(z):
    return jnp.sum(center_loss.update(_state(), z, jnp.asarray(LABELS),
                                      alpha=0.5).centers)

  np.testing.assert_array_equal(jax.grad(moved)(jnp.asarray(Z)),
                                np.zeros_like(Z))
