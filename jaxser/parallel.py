"""Data parallelism with `jax.sharding`: one mesh axis over every device.

The global batch is split along the mesh's 'data' axis; parameters, optimizer
state and centres are replicated. The train step is the single-device step
jit-compiled with these shardings (no pmap): XLA inserts the collectives, so
sums over the batch (the losses' weighted means and the per-class sums and
counts of the centre update, equation 3) are over the global batch, exactly
as on one device.

Several hosts: `initialize()` calls `jax.distributed.initialize` when a
coordinator is given; each process then prepares only its slice of every
global batch, and `global_batch` assembles the global array from the slices.
"""

import math
import os

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

from jaxser.errors import ConfigError

__all__ = ['DATA_AXIS', 'RUNS_AXIS', 'batch_sharding', 'make_run_mesh', 'run_batch_sharding',
           'run_sharding',
           'check_divisible', 'global_batch', 'initialize', 'is_chief',
           'make_mesh', 'replicate', 'replicated', 'shard_batch', 'sync',
           'to_host']

DATA_AXIS = 'data'  # the mesh's one axis: the batch is split along it
RUNS_AXIS = 'runs'  # a run mesh's first axis: runs trained side by side


def initialize(coordinator_address: str | None = None,
               num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """Joins a multi-process run when a coordinator is given.

  The arguments default to the environment variables JAX_COORDINATOR_ADDRESS,
  JAX_NUM_PROCESSES and JAX_PROCESS_ID. With no coordinator nothing happens
  (a single process; on Cloud TPU call `jax.distributed.initialize()` with no
  arguments yourself, or set the variables).
  """
  coordinator_address = coordinator_address or os.environ.get('JAX_COORDINATOR_ADDRESS')
  if not coordinator_address:
    return
  num_processes = num_processes or int(os.environ.get('JAX_NUM_PROCESSES', '0')) or None
  if process_id is None and 'JAX_PROCESS_ID' in os.environ:
    process_id = int(os.environ['JAX_PROCESS_ID'])
  # CPU processes exchange collectives through gloo (GPUs and TPUs ignore
  # this). Asking for the backend here would start it too early.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
  logging.info('process %d of %d, %d local / %d global devices',
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh named 'data' over `devices` (default: all of them)."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  return jax.sharding.Mesh(devices.reshape(-1), (DATA_AXIS,))


def make_run_mesh(num_runs: int, devices=None) -> jax.sharding.Mesh:
  """A 2-D mesh ('runs', 'data') for `num_runs` runs trained side by side.

  The runs axis takes as many devices as divide both the run count and the
  device count (gcd), the data axis the rest: 8 runs on 8 devices, one run
  per device; 2 runs on 4 devices, each run's batch over 2; 3 runs on 4
  devices, every run's batch over all 4.
  """
  devices = np.asarray(jax.devices() if devices is None else devices).reshape(-1)
  runs = math.gcd(int(num_runs), devices.size)
  return jax.sharding.Mesh(devices.reshape(runs, -1), (RUNS_AXIS, DATA_AXIS))


def run_sharding(mesh) -> jax.sharding.NamedSharding:
  """Leading (run) axis split over the run mesh's 'runs' axis."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(RUNS_AXIS))


def run_batch_sharding(mesh) -> jax.sharding.NamedSharding:
  """`[runs, batch, ...]`: runs over 'runs', each run's batch over 'data'."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(RUNS_AXIS, DATA_AXIS))


def batch_sharding(mesh) -> jax.sharding.NamedSharding:
  """Leading (batch) axis split over the devices."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(DATA_AXIS))


def replicated(mesh) -> jax.sharding.NamedSharding:
  """The sharding of a full copy on every device of the mesh."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def check_divisible(batch_size: int, mesh, what: str = 'config.batch_size') -> None:
  """The global batch must split evenly over devices (and processes).

  Raises:
    ConfigError: naming `what` (the config field or flag), its value and the
      number of devices.
  """
  devices = mesh.devices.size
  if batch_size % devices:
    raise ConfigError(f'{what}={batch_size}: must be divisible by the '
                      f'{devices} devices of the data-parallel mesh')


def _local_rows(batch_size: int) -> slice:
  """This process's rows of a global batch of `batch_size`."""
  per_process = batch_size // jax.process_count()
  start = jax.process_index() * per_process
  return slice(start, start + per_process)


def global_batch(local: dict, mesh) -> dict:
  """Global arrays, sharded over 'data', from each process's slice.

  Args:
    local: this process's rows of the batch (with one process: all of it).
    mesh: the data mesh.

  Returns:
    The same keys as global `jax.Array`s.
  """
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local.items()}


def replicate(tree, mesh):
  """Puts a pytree on every device of the mesh (a replicated copy)."""
  return jax.device_put(tree, replicated(mesh))


def to_host(tree):
  """Numpy copies of (possibly multi-process, sharded) global arrays."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def is_chief() -> bool:
  """Only process 0 writes logs, metrics and plots."""
  return jax.process_index() == 0


def shard_batch(batch: dict, mesh) -> dict:
  """Global arrays from a batch every process holds whole (evaluation).

  Each process contributes its own rows (`_local_rows`); with one process
  this is `global_batch(batch, mesh)`.
  """
  rows = _local_rows(len(next(iter(batch.values()))))
  return global_batch({k: np.asarray(v)[rows] for k, v in batch.items()}, mesh)


def sync(name: str) -> None:
  """Waits until every process reaches this point (no-op with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
