"""Where a result came from: versions, commit, devices and times.

`describe(config)` is what `results.json` and the crossval and ablate
summaries carry beside their numbers, so a reader can tell which code, which
libraries and which machine produced them. None of it is part of a run's
identity (`run_record.run_identity`): a rerun with a newer jax is the same
run, and says so here.
"""

import datetime
import importlib.metadata
import json
import os
import subprocess

import jax

__all__ = ['DISTRIBUTIONS', 'accelerator_warning', 'describe', 'devices',
           'git_commit', 'now', 'versions']

DISTRIBUTIONS = ('jaxser', 'jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint',
                 'grain', 'chex', 'numpy', 'librosa')
# Installed, they mean an accelerator was meant to be used.
_ACCELERATOR_PLUGINS = {'jax-cuda12-plugin': 'gpu', 'jax-cuda13-plugin': 'gpu',
                        'jax-rocm7-plugin': 'gpu', 'libtpu': 'tpu'}


def versions() -> dict[str, str | None]:
  """The installed version of each of `DISTRIBUTIONS` (None if absent)."""
  out = {}
  for name in DISTRIBUTIONS:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  return out


def git_commit() -> str | None:
  """The commit of the checkout jaxser runs from (`-dirty` if it has changes).

  None when jaxser is not run from a git checkout (an installed wheel) or
  git is not there.
  """
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  if not os.path.exists(os.path.join(root, '.git')):
    return None
  try:
    commit = subprocess.run(['git', '-C', root, 'rev-parse', 'HEAD'], capture_output=True,
                            text=True, timeout=10, check=True).stdout.strip()
    dirty = subprocess.run(['git', '-C', root, 'status', '--porcelain',
                            '--untracked-files=no'], capture_output=True, text=True,
                           timeout=10, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return commit + ('-dirty' if dirty else '')


def devices() -> list[str]:
  """`'<platform>:<id> <kind>'` of every device the run uses."""
  return [f'{d.platform}:{d.id} {d.device_kind}' for d in jax.devices()]


def accelerator_warning() -> str | None:
  """A warning when an accelerator's jax plugin is installed but unused."""
  backend = jax.default_backend()
  for name, kind in _ACCELERATOR_PLUGINS.items():
    try:
      importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      continue
    if backend != kind:
      return (f'{name} is installed but jax runs on the {backend}: no {kind} '
              f'was found or initialised (check the driver, or '
              f'JAX_PLATFORMS={os.environ.get("JAX_PLATFORMS", "")!r})')
  return None


def now() -> str:
  """The time, ISO 8601 in UTC, to the second."""
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


def describe(config, started: str) -> dict:
  """The provenance of a result: its config, versions, commit, devices, times.

  Args:
    config: the run's `ConfigDict` (recorded whole).
    started: when the work began (`now()` then).
  """
  return {'config': json.loads(config.to_json_best_effort()),
          'versions': versions(), 'commit': git_commit(), 'devices': devices(),
          'processes': jax.process_count(), 'started': started, 'finished': now()}
