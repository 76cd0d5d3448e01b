"""jaxser.augment end to end on the tiny config: results, figure, generators;
a workdir without a selected checkpoint is refused by name."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxser import augment
from jaxser import augment_study
from jaxser import train
from jaxser.configs import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def run(tone_manifest, tmp_path_factory):
  root = tmp_path_factory.mktemp('augment')
  config = tiny.get_config()
  config.corpus, config.corpus_root = 'manifest', tone_manifest
  config.cache_dir, config.plots = str(root / 'cache'), False
  train.train_and_evaluate(config, str(root / 'run'))
  return root / 'run'


def test_augment_writes_results_figure_and_generators(run):
  results = augment.run(str(run))
  assert set(results['variants']) == set(augment.VARIANTS)
  saved = json.loads((run / 'augment' / 'ratio1' / 'results.json').read_text())
  assert saved['variants'].keys() == results['variants'].keys()
  sizes = saved['sizes']
  for name, r in saved['variants'].items():
    assert 0 <= r['ua'] <= 1 and 0 <= r['f1'] <= 1 and r['step'] >= 1, name
    # ratio 1: as many synthetic vectors as real ones, the same for each class.
    expected = 0 if name == 'none' else 4 * round(sizes['train'] / 4)
    assert r['synthetic'] == expected, name
  for name in augment.GAN_VARIANTS:
    g = saved['generators'][name]
    assert g['mi_bound'] <= g['mi_bound_max'] == pytest.approx(np.log(4))
    assert 0 <= g['real_classifier_accuracy'] <= 1
    assert (run / 'augment' / 'ratio1' / f'generator_{name}.msgpack').stat().st_size > 1000
  assert (run / 'augment' / 'ratio1' / 'real_and_generated.png').stat().st_size > 10000
  assert saved['before']['ua'] == pytest.approx(
      json.loads((run / 'results.json').read_text())['test']['ua'], abs=1e-6)
  assert saved['provenance']['versions']['jax']


def test_augment_is_deterministic_for_a_seed(run):
  first = augment.run(str(run))
  again = augment.run(str(run))
  assert first['variants'] == again['variants']
  assert first['generators'] == again['generators']


def test_a_workdir_without_a_selected_checkpoint_is_named(tmp_path):
  (tmp_path / 'checkpoints').mkdir()
  out = subprocess.run([sys.executable, '-m', 'jaxser.augment', f'--workdir={tmp_path}'],
                       capture_output=True, text=True, cwd=ROOT)
  assert out.returncode == 1
  assert out.stderr.strip().splitlines()[-1] == (
      f'jaxser: {tmp_path}: no selected checkpoint (best/): augmentation needs a '
      'trained run that evaluated dev at least once')


def test_every_run_of_a_crossval_is_augmented_and_summarised(run, tmp_path, monkeypatch):
  root = tmp_path / 'cv'
  (root / 'seed0').mkdir(parents=True)
  os.symlink(run, root / 'seed0' / 'fold0')
  config = tiny.get_config()
  config.augment.ratio = 2.0
  summary = augment_study.run_all(str(root), config)
  assert summary['runs'] == 1 and summary['settings']['ratio'] == 2.0
  assert summary['variants']['gan_mi']['gain_over_none']['n'] == 1
  assert (root / 'augment_ratio2.md').read_text().startswith('# Augmentation of 1 runs, ratio 2')
  saved = json.loads((run / 'augment' / 'ratio2' / 'results.json').read_text())
  assert saved['variants']['noise']['synthetic'] == 4 * round(2 * saved['sizes']['train'] / 4)
  # The same settings on the same run: reused, not augmented again.
  monkeypatch.setattr(augment, 'run', lambda *a, **k: pytest.fail('augmented again'))
  assert augment_study.run_all(str(root), config)['variants'] == summary['variants']


def test_a_condition_per_utterance_is_used_and_checked(run, tmp_path):
  from jaxser import evaluate  # pylint: disable=g-import-not-at-top
  from jaxser.errors import JaxserError  # pylint: disable=g-import-not-at-top
  train_split = evaluate.run_embeddings(str(run), ('train',))['train']
  # A synthetic condition that carries the class, keyed by utterance id.
  rng = np.random.default_rng(0)
  vectors = {str(i): np.eye(4)[y] + 0.1 * rng.standard_normal(4)
             for i, y in zip(train_split['ids'], train_split['labels'])}
  np.savez(tmp_path / 'condition.npz', **vectors)
  config = tiny.get_config()
  config.augment.condition = str(tmp_path / 'condition.npz')
  config.augment.variants = 'gan_mi'
  results = augment.run(str(run), config)
  assert 0 <= results['variants']['gan_mi']['ua'] <= 1
  assert results['generators']['gan_mi']['mi_bound'] <= np.log(4) + 1e-6
  # An utterance without a condition is named, not skipped.
  del vectors[str(train_split['ids'][0])]
  np.savez(tmp_path / 'partial.npz', **vectors)
  config.augment.condition = str(tmp_path / 'partial.npz')
  with pytest.raises(JaxserError, match='no condition for 1 training utterances, e.g. '
                     + str(train_split['ids'][0])):
    augment.run(str(run), config)
