"""The package's XLA options: they compile the model to the same numbers,
are empty off the CPU, and give way to the user's XLA_FLAGS."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxser import models
from jaxser import xla_options
from models_test import TINY, _variables  # pylint: disable=g-bad-import-order


def test_compiler_options(monkeypatch):
  options = xla_options.compiler_options('cpu')
  if options:  # this jaxlib knows the option: it compiles the model with it
    apply = jax.jit(models.CRNN(**TINY).apply)
    variables = _variables('tiny')
    args = (variables, jnp.ones((2, 40, 12)), jnp.array([40, 20]))
    np.testing.assert_allclose(
        apply.lower(*args).compile(options)(*args)[0], apply(*args)[0],
        rtol=0, atol=1e-5)
  assert xla_options.compiler_options('gpu') == {}
  # The user's XLA_FLAGS win.
  xla_options.compiler_options.cache_clear()
  monkeypatch.setenv('XLA_FLAGS', '--xla_cpu_experimental_ynn_fusion_type=')
  try:
    assert xla_options.compiler_options('cpu') == {}
  finally:
    xla_options.compiler_options.cache_clear()
