"""The centre loss as a pair of pure functions with an explicit state.

Nothing here knows about a model: give it embeddings `z` `[batch, dim]` and
integer labels `[batch]`. Like an optax transform, the state is a `NamedTuple`
that the caller threads through its training step:

  state = center_loss.init(num_classes, dim)
  ...                                   # inside the step:
  per_example = center_loss.loss(z, labels, state)      # ||z_i - c_{y_i}||^2
  state = center_loss.update(state, z, labels, alpha=0.5)

The centres are not parameters: `loss` sees them through `stop_gradient`, and
`update` moves them towards the batch class means (docs/method.md, Losses and
centres: equations (3)-(4), or Wen et al.'s rule with `rule='wen'`).
"""

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

__all__ = ['CenterLossState', 'init', 'loss', 'update']


class CenterLossState(NamedTuple):
  """The class centres.

  Attributes:
    centers: `[num_classes, dim]`, one centre per class.
  """
  centers: jax.Array


def init(num_classes: int, dim: int, dtype=jnp.float32) -> CenterLossState:
  """Centres at zero, as in the paper.

  Args:
    num_classes: number of classes.
    dim: size of the embeddings.
    dtype: dtype of the centres.

  Returns:
    A `CenterLossState` with `[num_classes, dim]` zeros.
  """
  return CenterLossState(centers=jnp.zeros((num_classes, dim), dtype))


def loss(embeddings: jax.Array, labels: jax.Array,
         state: CenterLossState) -> jax.Array:
  """Per-example squared distance to the centre of the example's class.

  `||z_i - c_{y_i}||^2`, without the factor 1/2. Gradients flow into the
  embeddings only. Weighting and averaging are the caller's (see
  `jaxser.losses.class_weighted_mean`).

  Args:
    embeddings: `[batch, dim]`.
    labels: `[batch]` int in `[0, num_classes)`.
    state: the current centres.

  Returns:
    `[batch]` squared Euclidean distances.
  """
  chex.assert_rank(embeddings, 2)
  chex.assert_shape(labels, (embeddings.shape[0],))
  chex.assert_shape(state.centers, (None, embeddings.shape[1]))
  centers = jax.lax.stop_gradient(state.centers)[labels]  # [batch, dim]
  return jnp.sum(jnp.square(embeddings - centers), axis=-1)


def _class_sums(embeddings: jax.Array, labels: jax.Array,
               mask: jax.Array | None, num_classes: int):
  """Per-class sums of the embeddings and per-class counts.

  The only reduction over the batch in the centre update, so that a
  data-parallel caller can `psum` its outputs across devices and get the
  class means of the global batch.

  Args:
    embeddings: `[batch, dim]`.
    labels: `[batch]` int; entries outside `[0, num_classes)` count nowhere.
    mask: `[batch]` bool, False for padding examples; None means all valid.
    num_classes: number of classes.

  Returns:
    `(sums [num_classes, dim], counts [num_classes])`, both in the dtype of
    the embeddings.
  """
  chex.assert_rank(embeddings, 2)
  chex.assert_shape(labels, (embeddings.shape[0],))
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=embeddings.dtype)
  if mask is not None:
    chex.assert_shape(mask, labels.shape)
    one_hot = one_hot * mask[:, None].astype(one_hot.dtype)
  # Full precision: on accelerators the default matmul may round to bf16/tf32.
  sums = jnp.einsum('bc,bd->cd', one_hot, embeddings,
                    precision=jax.lax.Precision.HIGHEST)
  return sums, jnp.sum(one_hot, axis=0)


def update(state: CenterLossState, embeddings: jax.Array, labels: jax.Array,
           *, alpha, mask: jax.Array | None = None, rule: str = 'ema',
           axis_name: str | None = None) -> CenterLossState:
  """Moves the centres towards the batch class means.

  With `n_j` the number of (unmasked) examples of class j in the batch and
  `S_j` the sum of their embeddings:

  * `rule='ema'` (equations (3)-(4), the default):
    `c_j <- (1 - alpha) c_j + alpha S_j / n_j` if `n_j > 0`;
  * `rule='wen'` (Wen et al., the authors' code):
    `c_j <- c_j - alpha (n_j c_j - S_j) / (1 + n_j)`, i.e.
    `c_j - alpha sum_{i: y_i = j} (c_j - z_i) / (1 + n_j)`.

  Classes absent from the batch keep their centres under both rules. Call it
  after the loss of the step is computed; the embeddings are taken through
  `stop_gradient`.

  Args:
    state: the current centres.
    embeddings: `[batch, dim]`.
    labels: `[batch]` int.
    alpha: the centre learning rate, a float or a scalar array.
    mask: `[batch]` bool, False for padding examples; None means all valid.
    rule: 'ema' or 'wen'.
    axis_name: if given, the sums and counts are `psum`med over this mapped
      axis, so every device computes the class means of the global batch.

  Returns:
    The new `CenterLossState`.
  """
  if rule not in ('ema', 'wen'):
    raise ValueError(f"rule must be 'ema' or 'wen', got {rule!r}")
  centers = state.centers
  embeddings = jax.lax.stop_gradient(embeddings).astype(centers.dtype)
  sums, counts = _class_sums(embeddings, labels, mask, centers.shape[0])
  if axis_name is not None:
    sums, counts = jax.lax.psum((sums, counts), axis_name)
  counts = counts[:, None]  # [classes, 1]
  if rule == 'ema':
    means = sums / jnp.maximum(counts, 1)
    new = (1 - alpha) * centers + alpha * means
  else:
    new = centers - alpha * (counts * centers - sums) / (1 + counts)
  # Absent classes keep their centres bit for bit (the 'wen' formula would
  # leave them unchanged too, up to flushing of subnormals).
  new = jnp.where(counts > 0, new, centers)
  return CenterLossState(centers=new.astype(centers.dtype))
