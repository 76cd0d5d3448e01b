"""How the train, eval and predict steps compile: XLA options and a cache.

`compiler_options` are the XLA options they run fastest under, as measured;
they live with the steps that compile under them, not with the model (the
model, `models.py`, is architecture only). `enable_compilation_cache` keeps
compiled programs on disk between processes, so a second run or prediction
loads them instead of compiling again.
"""

import functools
import os

import jax
import jax.numpy as jnp

__all__ = ['compilation_cache_dir', 'compiler_options', 'enable_compilation_cache']

# XLA:CPU (jaxlib 0.10 here) hands convolutions, dots and reductions to
# YNNPACK by default. For this model's convolutions and their gradients
# YNNPACK was 2-3x slower than XLA's Eigen convolutions on the x86 machine of
# docs/performance.md; dots and reductions stay with YNNPACK, where they were
# faster. YNNPACK for elementwise fusions as well made the log-Mel training
# step 7-9 % faster there (400 and 1400 frames) but the log-STFT one (513
# bins) 1.7x slower, so it is asked for only on inputs of at most
# `_YNN_ELTWISE_MAX_BINS` bins. The option is experimental, hence the probe
# below.
_YNN_OPTION = 'xla_cpu_experimental_ynn_fusion_type'
_YNN_WITHOUT_CONVOLUTIONS = ('LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,'
                             'LIBRARY_FUSION_TYPE_REDUCE')
_YNN_ELTWISE = ',LIBRARY_FUSION_TYPE_ELTWISE'
_YNN_ELTWISE_MAX_BINS = 128


@functools.cache
def compiler_options(backend: str | None = None,
                     num_bins: int | None = None) -> dict[str, str]:
  """XLA options under which the model's programs run fastest.

  Pass them to `jax.jit(..., compiler_options=...)` for the train, eval and
  predict steps. They only concern the CPU backend: for others, when the
  user's `XLA_FLAGS` already set the option, or when this jaxlib does not
  know it, the result is empty and XLA's defaults apply.

  Args:
    backend: the platform the steps compile for; `jax.default_backend()` by
      default.
    num_bins: the frequency bins of the training step's input, when known:
      up to 128 (log-Mel), elementwise fusions go to YNNPACK too.

  Returns:
    A dict of XLA debug options (possibly empty).
  """
  backend = backend or jax.default_backend()
  if backend != 'cpu' or _YNN_OPTION in os.environ.get('XLA_FLAGS', ''):
    return {}
  candidates = [_YNN_WITHOUT_CONVOLUTIONS]
  if num_bins is not None and num_bins <= _YNN_ELTWISE_MAX_BINS:
    candidates.insert(0, _YNN_WITHOUT_CONVOLUTIONS + _YNN_ELTWISE)
  for fusion_types in candidates:
    options = {_YNN_OPTION: fusion_types}
    try:  # Unknown options fail at compile time: try them on a tiny program.
      jax.jit(jnp.negative).lower(
          jnp.zeros((), jnp.float32)).compile(compiler_options=options)
    except Exception:  # pylint: disable=broad-except
      continue
    return options
  return {}


def compilation_cache_dir() -> str | None:
  """Where compiled programs are kept, or None when the cache is off.

  `$JAXSER_COMPILATION_CACHE` (a folder, or `off`), else jax's own
  `$JAX_COMPILATION_CACHE_DIR`, else `$JAXSER_CACHE/xla` or
  `~/.cache/jaxser/xla`.
  """
  chosen = os.environ.get('JAXSER_COMPILATION_CACHE')
  if chosen is not None:
    return None if chosen.lower() in ('', '0', 'off', 'false', 'no') else chosen
  if os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    return os.environ['JAX_COMPILATION_CACHE_DIR']
  base = os.environ.get('JAXSER_CACHE') or os.path.join(
      os.path.expanduser('~'), '.cache', 'jaxser')
  return os.path.join(base, 'xla')


def enable_compilation_cache() -> str | None:
  """Turns on jax's persistent compilation cache; returns its folder (or None).

  Every program is kept, however fast it compiled: the commands' start-up is
  many small programs. XLA keys each entry by the program, the compiler
  options, the device and the jax version, so an entry is only reused for
  the same computation. The commands call this; a library user may too.
  """
  folder = compilation_cache_dir()
  if folder is None:
    return None
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError:
    return None  # a read-only home: compile every time, as without a cache
  jax.config.update('jax_compilation_cache_dir', folder)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  return folder
