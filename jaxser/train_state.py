"""The state a training step reads and writes, and its initial value.

`TrainState` holds the parameters, the optimizer state and the class centres
side by side (the centres are explicit carried state, not model variables),
the step and one RNG key from which every step derives its own
(`jax.random.fold_in(rng, step)`), so a resumed run draws the same numbers.
The model's `apply` and the optimizer are static fields, equal for equal
models and learning rates, so runs that differ only in seed, data or the
step's inputs share one compiled train step.
"""

import dataclasses
import functools
from typing import Any, Callable

from flax import struct
import jax
import jax.numpy as jnp
import optax

from jaxser import center_loss
from jaxser import models

__all__ = ['ModelApply', 'TrainState', 'abstract', 'adam', 'create']


@struct.dataclass
class TrainState:
  """Everything a training step reads and writes."""
  step: jax.Array  # int32 scalar: steps taken.
  params: Any
  opt_state: Any
  centers: center_loss.CenterLossState  # [classes, embedding_dim]
  rng: jax.Array  # one key; per-step keys are fold_in(rng, step)
  apply_fn: Callable = struct.field(pytree_node=False)
  tx: optax.GradientTransformation = struct.field(pytree_node=False)


@dataclasses.dataclass(frozen=True)
class ModelApply:
  """`model.apply`, equal (and hashing equal) for equal models.

  A bound method is equal only to itself, so two runs' states would differ
  in their static fields and the jitted step would compile once per run.
  """
  model: models.CRNN

  def __call__(self, *args, **kwargs):
    return self.model.apply(*args, **kwargs)


@functools.lru_cache(maxsize=None)
def adam(learning_rate: float) -> optax.GradientTransformation:
  """`optax.adam(learning_rate)`, one object per learning rate (see ModelApply)."""
  return optax.adam(learning_rate)


def create(model: models.CRNN, num_bins: int, *, seed: int,
           learning_rate: float) -> TrainState:
  """Initial parameters (from `seed`), Adam state and zero centres."""
  init_rng, state_rng = jax.random.split(jax.random.PRNGKey(seed))
  frames = models.min_frames(model.convs)
  variables = model.init(init_rng, jnp.zeros((1, frames, num_bins), jnp.float32),
                         jnp.full((1,), frames, jnp.int32))
  tx = adam(float(learning_rate))
  params = variables['params']
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
      centers=center_loss.init(model.num_classes, model.embedding_dim),
      rng=state_rng, apply_fn=ModelApply(model), tx=tx)


def abstract(model: models.CRNN, num_bins: int, *, learning_rate: float) -> TrainState:
  """The shapes and dtypes of `create`'s state, without computing it."""
  return jax.eval_shape(lambda: create(model, num_bins, seed=0,
                                       learning_rate=learning_rate))
