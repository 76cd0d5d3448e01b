"""jaxser.stacked: runs trained side by side equal the same runs trained one
after the other, also resumed and on a runs x data mesh of 4 devices; runs
that cannot stack are refused by name.

Tolerance: 1e-5 on parameters and centres. The stack computes the same
float32 operations, but vmap batches the convolutions and matmuls of the
runs together, so XLA may order their sums differently; over the tiny
config's 12 steps the differences measured were under 1e-7.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import write_tone_corpus
from jaxser import evaluate
from jaxser import stacked
from jaxser import train
from jaxser import workdir as workdir_lib
from jaxser.configs import tiny
from jaxser.errors import ConfigError

TOLERANCE = 1e-5


@pytest.fixture(scope='module')
def configs(tmp_path_factory):
  root = tmp_path_factory.mktemp('stacked')
  manifest = write_tone_corpus(str(root / 'tones'), per_class_speaker=6)

  def config(seed, fold, lam, alpha):
    c = tiny.get_config()
    c.corpus, c.corpus_root = 'manifest', manifest
    c.cache_dir, c.plots, c.protocol = str(root / 'cache'), False, 'paper'
    c.seed, c.split_seed, c.fold = seed, seed, fold
    c.center_loss_weight, c.center_alpha = lam, alpha
    return c

  # Different seeds, folds (so class weights and splits), lambda and alpha.
  return [config(0, 0, 0.3, 0.5), config(1, 2, 0.0, 0.5), config(2, 4, 0.03, 0.9)]


@pytest.fixture(scope='module')
def one_by_one(configs, tmp_path_factory):
  root = tmp_path_factory.mktemp('one_by_one')
  dirs = [str(root / f'run{r}') for r in range(len(configs))]
  return dirs, [train.train_and_evaluate(c, d) for c, d in zip(configs, dirs)]


def assert_same_run(a_dir, a, b_dir, b):
  assert (a['selected_step'], a['ua'], a['wa'], a['confusion']) == (
      b['selected_step'], b['ua'], b['wa'], b['confusion'])
  state_a = evaluate.restore_selected(a_dir)[1]
  state_b = evaluate.restore_selected(b_dir)[1]
  for x, y in zip(jax.tree.leaves(state_a.params), jax.tree.leaves(state_b.params)):
    np.testing.assert_allclose(x, y, atol=TOLERANCE, rtol=0)
  np.testing.assert_allclose(state_a.centers.centers, state_b.centers.centers,
                             atol=TOLERANCE, rtol=0)
  for name in ('metrics.jsonl',):
    steps = lambda d: [json.loads(line)['step'] for line in open(os.path.join(d, name))]
    assert steps(a_dir) == steps(b_dir)


def test_a_stack_equals_the_runs_one_after_the_other(configs, one_by_one, tmp_path):
  dirs, alone = one_by_one
  stack_dirs = [str(tmp_path / f'run{r}') for r in range(len(configs))]
  together = stacked.train_and_evaluate(configs, stack_dirs)
  assert len({r['fold'] for r in together}) == 3
  for r in range(len(configs)):
    assert_same_run(dirs[r], alone[r], stack_dirs[r], together[r])


def test_a_stack_killed_and_resumed_equals_the_runs(configs, one_by_one, tmp_path):
  dirs, alone = one_by_one
  stack_dirs = [str(tmp_path / f'run{r}') for r in range(len(configs))]
  # Run 0 went further alone before: the stack masks it until the others catch up.
  assert train.train_and_evaluate(configs[0], stack_dirs[0], interrupt_at_step=8) is None
  assert stacked.train_and_evaluate(configs, stack_dirs, interrupt_at_step=4) == [None] * 3
  assert [workdir_lib.saved_step(d) for d in stack_dirs] == [8, 4, 4]
  resumed = stacked.train_and_evaluate(configs, stack_dirs)
  for r in range(len(configs)):
    assert_same_run(dirs[r], alone[r], stack_dirs[r], resumed[r])


def test_runs_that_cannot_stack_are_refused_by_name(configs, tmp_path):
  other = configs[1].copy_and_resolve_references()
  other.num_train_steps = 8
  with pytest.raises(ConfigError, match='their configs differ in num_train_steps'):
    stacked.train_and_evaluate([configs[0], other], [str(tmp_path / 'a'), str(tmp_path / 'b')])
  with pytest.raises(ConfigError, match='distinct workdirs'):
    stacked.train_and_evaluate(configs[:2], [str(tmp_path / 'a')] * 2)
  assert not os.path.exists(tmp_path / 'a')  # refused before any work


FOUR_DEVICES = '''
import sys
sys.path.insert(0, 'tests')
import jax, numpy as np
from conftest import write_tone_corpus
from jaxser import evaluate, parallel, stacked, train
from jaxser.configs import tiny

assert jax.device_count() == 4, jax.devices()
root = sys.argv[1]
manifest = write_tone_corpus(root + '/tones', per_class_speaker=6)
configs = []
for seed, lam in ((0, 0.3), (1, 0.0)):
  c = tiny.get_config()
  c.corpus, c.corpus_root, c.cache_dir, c.plots = 'manifest', manifest, root + '/cache', False
  c.protocol, c.seed, c.split_seed, c.fold, c.center_loss_weight = 'paper', seed, seed, seed, lam
  configs.append(c)
mesh = parallel.make_run_mesh(2)
assert dict(mesh.shape) == {'runs': 2, 'data': 2}, mesh.shape
assert dict(parallel.make_run_mesh(3).shape) == {'runs': 1, 'data': 4}
alone = [train.train_and_evaluate(c, f'{root}/alone{r}') for r, c in enumerate(configs)]
together = stacked.train_and_evaluate(configs, [f'{root}/stack{r}' for r in range(2)])
for r in range(2):
  assert alone[r]['selected_step'] == together[r]['selected_step']
  assert alone[r]['ua'] == together[r]['ua'], (alone[r]['ua'], together[r]['ua'])
  a = evaluate.restore_selected(f'{root}/alone{r}')[1]
  b = evaluate.restore_selected(f'{root}/stack{r}')[1]
  diff = max(float(np.max(np.abs(x - y))) for x, y in zip(
      jax.tree.leaves(jax.device_get(a.params)), jax.tree.leaves(jax.device_get(b.params))))
  print('PARAM_DIFF', r, diff)
  assert diff <= %g
'''


def test_runs_and_data_compose_on_four_devices(tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4',
             JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', FOUR_DEVICES % TOLERANCE, str(tmp_path)],
                       cwd=root, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.count('PARAM_DIFF') == 2


def test_a_stack_of_waveform_augmented_runs_equals_the_runs(configs, tmp_path):
  wave = [c.copy_and_resolve_references() for c in configs[:2]]
  for c in wave:
    c.wave_augment.update(noise_probability=0.5, speed_factors='0.9,1.0,1.1',
                          reverb_probability=0.5)
  alone_dirs = [str(tmp_path / f'alone{r}') for r in range(2)]
  alone = [train.train_and_evaluate(c, d) for c, d in zip(wave, alone_dirs)]
  stack_dirs = [str(tmp_path / f'stacked{r}') for r in range(2)]
  together = stacked.train_and_evaluate(wave, stack_dirs)
  for r in range(2):
    assert_same_run(alone_dirs[r], alone[r], stack_dirs[r], together[r])
