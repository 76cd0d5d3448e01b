"""jaxser.progress: the compile is left out of the rate; bars in a log; and
jaxser.provenance names an accelerator installed but unused."""

import time

from absl import logging
import numpy as np

from jaxser import progress


def test_compile_steps_are_timed_apart_and_left_out_of_the_rate(monkeypatch):
  clock = iter(np.arange(0.0, 1000.0, 0.5))  # each perf_counter call: +0.5 s
  monkeypatch.setattr(time, 'perf_counter', lambda: float(next(clock)))
  p = progress.Progress(start_step=0, total=10)
  batch_a, batch_b = ({'features': np.zeros((2, n, 3))} for n in (100, 200))
  calls = []
  for step, batch in enumerate([batch_a, batch_a, batch_b, batch_a], 1):
    p.step(lambda: calls.append(step), batch, step)
  assert calls == [1, 2, 3, 4]
  assert p.compiled_steps == 2 and p.compile_seconds == 1.0  # two new lengths
  line = p.line(4, {'loss': 1.0, 'ce': 1.0, 'center': 0.0, 'accuracy': 0.5})
  # 2 steps that did not compile over the elapsed time less the compiles.
  assert 'steps/s, ETA' in line and 'nan' not in line


def test_bar_logs_ten_lines_when_not_a_terminal(monkeypatch):
  lines = []
  monkeypatch.setattr(logging, 'info', lambda fmt, *args: lines.append(fmt % args))
  with progress.bar(40, 'mel features', 'utt') as shown:
    for _ in range(40):
      shown.update(1)
  assert len(lines) == 10
  assert lines[0].startswith('mel features: 4/40 utt') and lines[-1].startswith(
      'mel features: 40/40 utt')


def test_an_unused_accelerator_plugin_is_named(monkeypatch):
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from jaxser import provenance  # pylint: disable=g-import-not-at-top
  real = importlib.metadata.version

  def version(name):
    if name == 'jax-cuda12-plugin':
      return '0.10.2'
    if name in ('jax-cuda13-plugin', 'jax-rocm7-plugin', 'libtpu'):
      raise importlib.metadata.PackageNotFoundError(name)
    return real(name)
  monkeypatch.setattr(importlib.metadata, 'version', version)
  monkeypatch.setattr(jax, 'default_backend', lambda: 'cpu')
  assert provenance.accelerator_warning().startswith(
      'jax-cuda12-plugin is installed but jax runs on the cpu: no gpu was found')
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert provenance.accelerator_warning() is None
