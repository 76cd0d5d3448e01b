"""Why runs side by side are slower on a CPU: the vmapped convolution.

Usage:
  python bench/tools/vmapped_conv.py [--runs 2] [--repeats 5]

`jax.vmap` of a convolution whose kernel differs per run (each run's own
parameters) becomes one grouped convolution (`feature_group_count`, and
`batch_group_count` in its kernel gradient). This times the paper model's
first two convolutions (batch 16, 300 x 128 log-Mel input) for R runs, as R
separate convolutions in one program against the vmapped one, forward and
kernel gradient, and prints seconds per call and the ratio.
"""

import argparse
import time

import jax
from jax import lax
import jax.numpy as jnp


def conv(x, kernel, stride):
  return lax.conv_general_dilated(x, kernel, (stride, stride), 'SAME',
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def seconds(fn, args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - start)
  return best


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--runs', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()
  r = args.runs
  layers = {'conv1 7x7/2, 1->24': ((r, 16, 300, 128, 1), (r, 7, 7, 1, 24), 2),
            'conv2 3x3/1, 24->32': ((r, 16, 150, 64, 24), (r, 3, 3, 24, 32), 1)}
  print(f'{jax.devices()}; {r} runs; best of {args.repeats}')
  for name, (x_shape, k_shape, stride) in layers.items():
    x, k = jnp.ones(x_shape), jnp.ones(k_shape)
    loop = jax.jit(lambda x, k: [conv(x[i], k[i], stride) for i in range(r)])
    vmapped = jax.jit(jax.vmap(lambda x, k: conv(x, k, stride)))
    loop_grad = jax.jit(jax.grad(lambda x, k: sum(
        jnp.sum(conv(x[i], k[i], stride) ** 2) for i in range(r)), argnums=1))
    vmapped_grad = jax.jit(jax.grad(lambda x, k: jnp.sum(
        jax.vmap(lambda a, b: conv(a, b, stride))(x, k) ** 2), argnums=1))
    for what, separate, grouped in (('forward', loop, vmapped),
                                    ('kernel gradient', loop_grad, vmapped_grad)):
      a, b = seconds(separate, (x, k), args.repeats), seconds(grouped, (x, k), args.repeats)
      print(f'{name:22s} {what:16s} separate {1e3 * a:7.1f} ms  vmapped {1e3 * b:7.1f} ms  '
            f'{b / a:5.1f}x slower')


if __name__ == '__main__':
  main()
