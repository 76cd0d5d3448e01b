"""Class weights, cross-entropy and the joint loss (docs/method.md, Losses and
centres).

Losses return per-example values; `class_weighted_mean` is the one reducer, so
the class weighting of equations (1) and (2) is written once:

  L_s = sum_i w_{y_i} CE_i / sum_i w_{y_i}                      (1)
  L_c = sum_i w_{y_i} ||z_i - c_{y_i}||^2 / sum_i w_{y_i}       (2)
  L   = L_s + lambda L_c                                        (7)
"""

import chex
import jax
import jax.numpy as jnp
import optax

from jaxser import center_loss

__all__ = ['class_weighted_mean', 'class_weights', 'cross_entropy',
           'joint_loss', 'warmup_schedule']


def class_weights(counts) -> jax.Array:
  """Weights inversely proportional to the training counts of each class.

  `w_j = max_k n_k / (n_j + 0.5)` (the authors' code); the 0.5 keeps a class
  with no training examples finite.

  Args:
    counts: `[num_classes]` number of training examples of each class.

  Returns:
    `[num_classes]` float32 weights.
  """
  counts = jnp.asarray(counts, jnp.float32)
  chex.assert_rank(counts, 1)
  return jnp.max(counts) / (counts + 0.5)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy with integer labels, unweighted.

  The weighting of equation (1) is applied by `class_weighted_mean`, so that
  the same reducer serves the centre loss.

  Args:
    logits: `[batch, num_classes]`.
    labels: `[batch]` int.

  Returns:
    `[batch]` `-log softmax(logits_i)[y_i]`.
  """
  chex.assert_rank(logits, 2)
  chex.assert_shape(labels, (logits.shape[0],))
  return optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels)


def class_weighted_mean(values: jax.Array, labels: jax.Array,
                        class_weights: jax.Array,
                        mask: jax.Array | None = None) -> jax.Array:
  """Class-weighted mean `sum_i w_{y_i} v_i / sum_i w_{y_i}`.

  Args:
    values: `[batch]` per-example values.
    labels: `[batch]` int.
    class_weights: `[num_classes]`, e.g. from `class_weights`.
    mask: `[batch]` bool, False for padding examples; None means all valid.

  Returns:
    A scalar; 0 when no example is valid.
  """
  chex.assert_rank(values, 1)
  chex.assert_shape(labels, values.shape)
  weights = jnp.take(class_weights, labels, mode='clip')  # [batch]
  if mask is not None:
    chex.assert_shape(mask, values.shape)
    weights = jnp.where(mask, weights, 0.0)
    values = jnp.where(mask, values, 0.0)  # padding may hold NaN or Inf
  total = jnp.sum(weights)
  return jnp.sum(weights * values) / jnp.where(total > 0, total, 1.0)


def joint_loss(logits: jax.Array, embeddings: jax.Array, labels: jax.Array,
               center_state: center_loss.CenterLossState, *,
               class_weights: jax.Array, lam,
               mask: jax.Array | None = None):
  """The joint loss `L_s + lambda L_c` of equation (7).

  Args:
    logits: `[batch, num_classes]`.
    embeddings: `[batch, dim]`, the `z` of the centre loss.
    labels: `[batch]` int.
    center_state: the current centres (no gradient flows into them).
    class_weights: `[num_classes]` class weights.
    lam: the weight lambda of the centre loss; 0 is softmax only.
    mask: `[batch]` bool, False for padding examples; None means all valid.

  Returns:
    `(total, {'ce': L_s, 'center': L_c})`, all scalars.
  """
  ce = class_weighted_mean(cross_entropy(logits, labels), labels,
                           class_weights, mask)
  center = class_weighted_mean(
      center_loss.loss(embeddings, labels, center_state), labels,
      class_weights, mask)
  return ce + lam * center, {'ce': ce, 'center': center}


def warmup_schedule(step, *, warmup_steps: int = 20, lam: float = 0.3,
                    alpha: float = 0.5):
  """Lambda and alpha at a training step (the authors' code).

  For the first `warmup_steps` steps lambda = 0 (softmax only) and alpha = 1
  (the centres take the batch class means); then the given values.

  Args:
    step: the step, 0-based; an int or a scalar int array (jit-friendly).
    warmup_steps: length of the warm-up.
    lam: lambda after the warm-up.
    alpha: alpha after the warm-up.

  Returns:
    `(lam_t, alpha_t)`, float32 scalars.
  """
  warm = jnp.asarray(step) < warmup_steps
  return (jnp.where(warm, 0.0, lam).astype(jnp.float32),
          jnp.where(warm, 1.0, alpha).astype(jnp.float32))
