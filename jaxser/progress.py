"""How long work shows its progress.

`Progress` is the training progress line: steps per second and ETA,
compilation apart. The first step of each padded length (bucket) compiles
the train step, which takes seconds to minutes; it is announced, timed and
left out of the rate and the ETA, so they describe training, not XLA.

`bar` is the progress of a long loop (synthesising the demo corpus, building
the feature cache): a tqdm bar on a terminal, log lines elsewhere.
"""

import contextlib
import sys
import time

from absl import logging
import tqdm

__all__ = ['Progress', 'bar']


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
    # [B, T, F] features or [B, S] waveforms, or [R, B, ...] stacked.
    length = (f'{batch["features"].shape[-2]} frames' if 'features' in batch
              else f'{batch["waveforms"].shape[-1]} samples')
    if length in self._seen:
      return run_step()
    self._seen.add(length)
    logging.info('step %d: compiling the train step for batches of %s (or '
                 'finding it compiled by an earlier run of this process)', step, length)
    start = time.perf_counter()
    out = run_step()
    seconds = time.perf_counter() - start  # the dispatch waits for the compile
    self.compile_seconds += seconds
    self.compiled_steps += 1
    logging.info('first step of that length in %.1f s, compile included (left out of '
                 'steps/s and the ETA)', seconds)
    return out

  def line(self, step: int, values: dict) -> str:
    elapsed = time.perf_counter() - self.t0 - self.compile_seconds
    steps = step - self.start_step - self.compiled_steps
    rate = steps / elapsed if steps > 0 and elapsed > 0 else float('nan')
    eta = (self.total - step) / rate if rate == rate and rate > 0 else float('nan')
    return (f'step {step}/{self.total} loss {values["loss"]:.4f} '
            f'ce {values["ce"]:.4f} center {values["center"]:.4f} '
            f'acc {values["accuracy"]:.3f} | {rate:.2f} steps/s, ETA {eta:.0f} s')


class _LoggedBar:
  """A progress bar for a log: a line at every tenth of the work."""

  def __init__(self, total: int, desc: str, unit: str):
    self.total, self.desc, self.unit = total, desc, unit
    self.done, self.next_tenth, self.t0 = 0, 1, time.perf_counter()

  def update(self, n: int) -> None:
    self.done += n
    while self.total and self.done * 10 >= self.next_tenth * self.total:
      logging.info('%s: %d/%d %s (%.0f s)', self.desc, self.done, self.total,
                   self.unit, time.perf_counter() - self.t0)
      self.next_tenth += 1


@contextlib.contextmanager
def bar(total: int, desc: str, unit: str):
  """A tqdm bar on a terminal; elsewhere (a log file, a pipe) ten log lines.

  tqdm redraws its line with carriage returns, which a redirected log keeps
  as one garbled line per refresh.
  """
  if sys.stderr.isatty():
    with tqdm.tqdm(total=total, desc=desc, unit=unit) as shown:
      yield shown
  else:
    yield _LoggedBar(total, desc, unit)
