"""The checks that stop a run before a NaN or Inf is evaluated or saved.

Training metrics are checked as they are fetched, and the whole state
(parameters, optimizer moments, centres) before every evaluation and save,
so no non-finite state is ever saved as the latest or the best checkpoint.
Each message names the step, the quantity, and the checkpoint that is kept.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxser import checkpoint as checkpoint_lib
from jaxser.errors import NonFiniteError

__all__ = ['check_metrics', 'check_state', 'kept_message']


# What each training metric checked for NaN and Inf measures, for messages.
_CHECKED = {'loss': 'the joint loss', 'ce': 'the cross-entropy loss',
            'center': 'the centre loss', 'center_max_abs': 'the class centres',
            'grad_norm': 'the gradients'}


def check_metrics(step_metrics: list[tuple[int, dict]], kept: str) -> None:
  """Raises NonFiniteError naming the first step and quantity that is NaN/Inf."""
  for step, values in step_metrics:
    for key, what in _CHECKED.items():
      if not np.isfinite(values[key]):
        raise NonFiniteError(
            f'step {step}: {what} became non-finite ({key} = {values[key]}); '
            f'training stopped, {kept}')


@jax.jit
def _finite_leaves(tree):
  return jax.tree_util.tree_map(lambda x: jnp.all(jnp.isfinite(x)), tree)


def check_state(state, step: int, kept: str) -> None:
  """Raises NonFiniteError if any parameter, optimizer moment or centre is."""
  parts = {'params': state.params, 'opt_state': state.opt_state,
           'centers': state.centers}
  flags = jax.device_get(_finite_leaves(parts))
  bad = [jax.tree_util.keystr(path) for path, ok in
         jax.tree_util.tree_flatten_with_path(flags)[0] if not ok]
  if bad:
    raise NonFiniteError(
        f'step {step}: non-finite values in the training state '
        f'({", ".join(bad[:4])}{", ..." if len(bad) > 4 else ""}); '
        f'training stopped, {kept}')


def kept_message(workdir: str, step: int | None) -> str:
  if step is None:
    return 'no checkpoint was saved before'
  return (f'the last good checkpoint (step {step}) is kept in '
          f'{os.path.join(workdir, checkpoint_lib.LATEST)}')
