"""Generative augmentation's speed: GAN steps per second and the whole stage.

Usage:
  python bench/augment.py [--workdir=DIR] [--steps=2000]

Trains a `jaxser/configs/demo.py:quick` run on fold 0 of the demo corpus
(or uses `--workdir`, a trained run), then times the jitted, donated GAN
step of `jaxser.gan` on its training embeddings (after one compiling step)
and the wall time of `jaxser.augment.run` on it with the default settings
(two GANs of 2000 steps, five FC2 variants).
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import optax  # pylint: disable=g-import-not-at-top,wrong-import-position

from jaxser import augment  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxser import evaluate  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxser import gan  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxser import train  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxser.configs import demo  # pylint: disable=g-import-not-at-top,wrong-import-position


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', default='')
  parser.add_argument('--steps', type=int, default=2000)
  args, _ = parser.parse_known_args()
  workdir = args.workdir
  if not workdir:
    workdir = os.path.join(tempfile.mkdtemp(), 'run')
    start = time.perf_counter()
    train.train_and_evaluate(demo.get_config('quick'), workdir)
    print(f'trained a demo.py:quick run (fold 0) in {time.perf_counter() - start:.1f} s')
  emb = evaluate.run_embeddings(workdir, ('train',))['train']
  aug = demo.get_config('quick').augment
  generator = gan.Generator(dim=emb['z'].shape[1], num_classes=4, hidden=aug.hidden)
  discriminator = gan.Discriminator(num_classes=4, hidden=aug.hidden)
  tx = optax.adam(aug.learning_rate, b1=0.5)
  state = gan.init_state(jax.random.key(0), generator, discriminator, tx, tx,
                         noise_dim=aug.noise_dim)
  step = gan.make_train_step(generator=generator, discriminator=discriminator, g_tx=tx,
                             d_tx=tx, noise_dim=aug.noise_dim, prior=np.full(4, 0.25))
  rng = np.random.default_rng(0)
  batches = [rng.integers(0, len(emb['z']), aug.gan_batch_size) for _ in range(args.steps + 1)]
  z, labels = jax.device_put(emb['z']), jax.device_put(emb['labels'])
  state, metrics = step(state, z[batches[0]], labels[batches[0]])  # compiles
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for rows in batches[1:]:
    state, metrics = step(state, z[rows], labels[rows])
  jax.block_until_ready(metrics)
  seconds = time.perf_counter() - start
  print(f'GAN step (batch {aug.gan_batch_size}, hidden {aug.hidden}, '
        f'{jax.default_backend()}): {args.steps / seconds:.0f} steps/s '
        f'({args.steps} steps in {seconds:.2f} s), load average {os.getloadavg()[0]:.1f}')
  start = time.perf_counter()
  results = augment.run(workdir)
  print(f'whole augment stage ({", ".join(results["variants"])}): '
        f'{time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
  main()
