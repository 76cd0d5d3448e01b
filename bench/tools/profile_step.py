"""Where the time of jaxser's training step goes, on CPU.

Usage:
  python bench/tools/profile_step.py [--kind mel] [--frames 400] [--top 15]
      [--xla-defaults]

Prints three views of the paper model's jitted train step (batch 32):

1. CPU time and minor page faults per step (`getrusage`): XLA allocates the
   step's temporaries afresh for each execution, and each first touch of a
   4 KiB page is a fault the kernel serves.
2. The convolutions on their own, with the step's shapes and the package's
   XLA options: forward, gradient with respect to the input, gradient with
   respect to the kernel (best of 5).
3. The slowest XLA operations of one step from a `jax.profiler` trace.
   Eigen convolutions and some dots run asynchronously on XLA's thread pool,
   so the trace shows only their dispatch; view 2 times them instead.

Lives in bench/tools/ so that `./launch.sh bench` (bench/*.py) skips it.
"""
import argparse
import collections
import glob
import gzip
import json
import os
import re
import resource
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, 'bench')]

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np

from jaxser import models
from jaxser import xla_options
import train_step as bench


def _cpu_and_faults(runner, steps=3):
  rows = []
  for _ in range(steps):
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    runner.run(1)
    after = resource.getrusage(resource.RUSAGE_SELF)
    rows.append((time.perf_counter() - start, after.ru_utime - before.ru_utime,
                 after.ru_stime - before.ru_stime,
                 after.ru_minflt - before.ru_minflt))
  wall, user, system, faults = np.min(np.array(rows), axis=0)
  print(f'step: wall {wall:.2f} s, CPU user {user:.2f} s + system '
        f'{system:.2f} s, {faults:.0f} minor page faults (best of {steps})')


def _best(fn, *args, repeats=5):
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return min(times)


def _conv_parts(kind, frames, options):
  """Forward / input gradient / kernel gradient of each conv layer."""
  rng = np.random.default_rng(0)
  t, f, c = frames, bench.BINS[kind], 1
  print('conv layer  input shape        fwd ms   dgrad ms  wgrad ms  '
        '(GFLOP/s fwd)')
  for i, spec in enumerate(models.PAPER_CONVS):
    x = jnp.asarray(rng.standard_normal((32, t, f, c), np.float32))
    w = jnp.asarray(rng.standard_normal(
        (spec.kernel, spec.kernel, c, spec.features), np.float32))
    conv = lambda x, w, s=spec.stride: jax.lax.conv_general_dilated(
        x, w, (s, s), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    y = jax.eval_shape(conv, x, w)
    g = jnp.ones(y.shape, y.dtype)
    parts = {
        'fwd': lambda x, w, g: conv(x, w),
        'dgrad': lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0],
        'wgrad': lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0],
    }
    ms = {}
    for name, fn in parts.items():
      if i == 0 and name == 'dgrad':  # the data needs no gradient
        ms[name] = float('nan')
        continue
      compiled = jax.jit(fn).lower(x, w, g).compile(options)
      ms[name] = 1e3 * _best(compiled, x, w, g)
    flops = 2 * np.prod(y.shape) * spec.kernel ** 2 * c
    print(f'conv{i + 1}       {str(x.shape):18s} {ms["fwd"]:8.1f} '
          f'{ms["dgrad"]:9.1f} {ms["wgrad"]:9.1f}  '
          f'({flops / ms["fwd"] / 1e6:.0f})')
    t, f, c = y.shape[1], y.shape[2], spec.features
    if spec.pool:
      t, f = t // spec.pool, f // spec.pool


def _trace_top(runner, top):
  """Slowest XLA operations of one step, from a profiler trace."""
  hlo = runner.compiled.as_text()
  folder = tempfile.mkdtemp()
  with jax.profiler.trace(folder, create_perfetto_trace=True):
    runner.run(1)
  path = glob.glob(folder + '/**/*perfetto_trace.json.gz', recursive=True)[0]
  with gzip.open(path) as f:
    trace = json.load(f)
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  total = collections.Counter()
  for e in events:
    if e.get('ph') == 'X' and not e['name'].startswith('$'):
      total[e['name']] += e.get('dur', 0)
  print('ms     XLA operation: result shape, source')
  shown = 0
  for name, micros in total.most_common():
    line = re.search(r'^\s*(?:ROOT )?%' + re.escape(name) + r' = (.*)$',
                     hlo, re.M)
    if not line:  # runtime bookkeeping, not an HLO operation
      continue
    shape = line.group(1).split(' ')[0]
    source = re.search(r'op_name="([^"]*)"', line.group(1))
    source = source.group(1).replace('jit(train_step)/', '') if source else ''
    print(f'{micros / 1e3:6.1f} {name}: {shape}, {source[-70:]}')
    shown += 1
    if shown == top:
      break


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--kind', default='mel', choices=sorted(bench.BINS))
  parser.add_argument('--frames', type=int, default=400)
  parser.add_argument('--top', type=int, default=15)
  parser.add_argument('--xla-defaults', dest='xla_options',
                      action='store_false')
  args = parser.parse_args()
  options = xla_options.compiler_options() if args.xla_options else None
  print(f'{args.kind} batch 32 x {args.frames} frames, compiler options '
        f'{options}, load average {os.getloadavg()[0]:.1f}')
  runner = bench.JaxserRunner(
      args.kind, bench.make_batch(32, args.frames, bench.BINS[args.kind]),
      xla_options=args.xla_options)
  runner.run(1)
  _cpu_and_faults(runner)
  _conv_parts(args.kind, args.frames, options)
  _trace_top(runner, args.top)


if __name__ == '__main__':
  main()
