"""Runs side by side (`jaxser.stacked`) against the same runs one after the other.

Usage:
  python bench/parallel_runs.py [--runs 1,2,4,8] [--sizes demo,paper] [--steps N]
      [--repeats 3]

For each model size and each R it builds R runs' states (seeds 0..R-1) and
R batches like the peer's (`bench/train_step.py`'s `make_batch`, one seed
per run), then times, in the same process and interleaved round by round:

- one after the other: R single-run states, each stepped by the jitted train
  step of `jaxser.steps.make_steps` (the program is shared: one compile);
- side by side: the R states stacked and stepped by
  `jaxser.steps.make_stacked_train_step` (`jax.vmap` over the run axis).

It prints runs x steps per second of each (best of `--repeats` rounds of
`--steps` steps, after a warm-up step) and the ratio side by side / one after
the other, with the compile times. Sizes: `demo` (`jaxser/configs/demo.py`:
batch 16, 300 frames, log-Mel, the paper's model) and `paper`
(`jaxser/configs/default.py`: batch 32, 400 frames, log-Mel). The machine's
load average is printed: on a shared machine trust the ratios, not the
absolute numbers.
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, 'bench')]

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from jaxser import config_lib  # pylint: disable=g-import-not-at-top
from jaxser import parallel  # pylint: disable=g-import-not-at-top
from jaxser import stacked  # pylint: disable=g-import-not-at-top
from jaxser import steps  # pylint: disable=g-import-not-at-top
from jaxser import train  # pylint: disable=g-import-not-at-top
from jaxser.configs import default as default_config  # pylint: disable=g-import-not-at-top
from jaxser.configs import demo as demo_config  # pylint: disable=g-import-not-at-top
import train_step as bench  # pylint: disable=g-import-not-at-top

SIZES = {'demo': (demo_config.get_config, 300), 'paper': (default_config.get_config, 400)}


def _setup(size: str, runs: int):
  """R states, batches and hparams for both ways; `(one_by_one, side_by_side)`."""
  get_config, frames = SIZES[size]
  config = get_config()
  model = config_lib.create_model(config, num_classes=4)
  bins = config_lib.feature_params(config).num_bins
  states, batches, hparams = [], [], []
  for r in range(runs):
    run_config = config.copy_and_resolve_references()
    run_config.seed = r
    states.append(train.create_train_state(run_config, model, bins))
    batches.append(bench.make_batch(config.batch_size, frames, bins, seed=r))
    hparams.append(config_lib.step_hparams(run_config, bench.CLASS_WEIGHTS))
  mesh = parallel.make_mesh()
  train_fn, _ = steps.make_steps(config, mesh)
  alone = [parallel.replicate(x, mesh) for x in (states, batches, hparams)]
  run_mesh = parallel.make_run_mesh(runs)
  stack = [jax.device_put(stacked.stack(x), parallel.run_sharding(run_mesh))
           for x in (states, hparams)]
  stack_batch = jax.device_put(stacked.stack(batches), parallel.run_batch_sharding(run_mesh))
  active = jax.device_put(np.ones(runs, bool), parallel.run_sharding(run_mesh))
  stacked_fn = steps.make_stacked_train_step(config, run_mesh)
  return (train_fn, alone), (stacked_fn, stack[0], stack_batch, stack[1], active)


def _time(step, count: int) -> float:
  start = time.perf_counter()
  out = None
  for _ in range(count):
    out = step()
  jax.block_until_ready(out)
  return time.perf_counter() - start


def measure(size: str, runs: int, steps_per_round: int, repeats: int) -> dict:
  (train_fn, (states, batches, hparams)), (stacked_fn, stack, batch, hp, active) = _setup(
      size, runs)
  start = time.perf_counter()
  compiled = train_fn.lower(states[0], batches[0], hparams[0]).compile()
  alone_compile = time.perf_counter() - start
  start = time.perf_counter()
  stacked_compiled = stacked_fn.lower(stack, batch, hp, active).compile()
  stacked_compile = time.perf_counter() - start
  box = {'states': states, 'stack': stack}

  def one_by_one():
    for r in range(runs):
      box['states'][r], metrics = compiled(box['states'][r], batches[r], hparams[r])
    return metrics

  def side_by_side():
    box['stack'], metrics = stacked_compiled(box['stack'], batch, hp, active)
    return metrics

  _time(one_by_one, 1)  # warm-up
  _time(side_by_side, 1)
  alone, together = [], []
  for _ in range(repeats):
    alone.append(_time(one_by_one, steps_per_round))
    together.append(_time(side_by_side, steps_per_round))
  work = runs * steps_per_round
  return {'size': size, 'runs': runs, 'one_by_one': work / min(alone),
          'side_by_side': work / min(together), 'ratio': min(alone) / min(together),
          'compile_one_s': alone_compile, 'compile_stacked_s': stacked_compile}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--runs', default='1,2,4,8')
  parser.add_argument('--sizes', default='demo,paper')
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  print(f'devices: {jax.devices()}; load average {os.getloadavg()[0]:.2f}')
  print('size   R  one after the other  side by side  ratio  compile (one / stacked)')
  for size in args.sizes.split(','):
    for runs in [int(r) for r in args.runs.split(',')]:
      m = measure(size, runs, args.steps, args.repeats)
      print(f'{size:6s} {runs:2d}  {m["one_by_one"]:8.2f} run-steps/s  '
            f'{m["side_by_side"]:8.2f} run-steps/s  {m["ratio"]:5.2f}x  '
            f'{m["compile_one_s"]:.1f} s / {m["compile_stacked_s"]:.1f} s', flush=True)
  print(f'load average {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
  main()
