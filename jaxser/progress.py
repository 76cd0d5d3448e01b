"""The training progress line: steps per second and ETA, compilation apart.

The first step of each padded length (bucket) compiles the train step, which
takes seconds to minutes; `Progress` announces it, times it and leaves it out
of the rate and the ETA, so they describe training, not XLA.
"""

import time

from absl import logging

__all__ = ['Progress']


class Progress:
  """Steps per second and ETA for the progress line."""

  def __init__(self, start_step: int, total: int):
    self.start_step, self.total = start_step, total
    self.t0 = time.perf_counter()
    self.compile_seconds = 0.0
    self.compiled_steps = 0
    self._seen = set()

  def step(self, run_step, batch, step: int):
    """Runs `run_step()`; the first batch of a new length is timed as a compile."""
    frames = batch['features'].shape[1]
    if frames in self._seen:
      return run_step()
    self._seen.add(frames)
    logging.info('step %d: compiling the train step for batches of %d frames', step,
                 frames)
    start = time.perf_counter()
    out = run_step()
    seconds = time.perf_counter() - start  # the dispatch waits for the compile
    self.compile_seconds += seconds
    self.compiled_steps += 1
    logging.info('compiled in %.1f s (left out of steps/s and the ETA)', seconds)
    return out

  def line(self, step: int, values: dict) -> str:
    elapsed = time.perf_counter() - self.t0 - self.compile_seconds
    steps = step - self.start_step - self.compiled_steps
    rate = steps / elapsed if steps > 0 and elapsed > 0 else float('nan')
    eta = (self.total - step) / rate if rate == rate and rate > 0 else float('nan')
    return (f'step {step}/{self.total} loss {values["loss"]:.4f} '
            f'ce {values["ce"]:.4f} center {values["center"]:.4f} '
            f'acc {values["accuracy"]:.3f} | {rate:.2f} steps/s, ETA {eta:.0f} s')
