"""jaxser.ablate: a two-variant study on the tiny config, its report, resuming."""

import csv
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from jaxser import ablate
from jaxser import crossval
from jaxser import evaluate
from jaxser import report
from jaxser import studies
from jaxser import train
from jaxser.configs import tiny
from jaxser.errors import JaxserError  # pylint: disable=g-import-not-at-top

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
STUDY = studies.Study('custom', 'lambda 0 against 0.3', (
    studies.Variant('softmax', 'mel', 0.0, 0.5),
    studies.Variant('center', 'mel', 0.3, 0.5)))


def tiny_config(manifest, tmp_path):
  config = tiny.get_config()
  config.corpus = 'manifest'
  config.corpus_root = manifest
  config.cache_dir = str(tmp_path / 'cache')
  config.plots = False
  config.features.max_frames = 200  # the tones are under 1.7 s: one padded
  config.buckets = (200,)  # length, so one compile per run
  return config


def counting(monkeypatch, module, name):
  """Replaces `module.name` by a wrapper that records its calls."""
  calls, real = [], getattr(module, name)

  def wrapper(*args, **kwargs):
    calls.append(args)
    return real(*args, **kwargs)

  monkeypatch.setattr(module, name, wrapper)
  return calls


def read_csv(path):
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def test_study_writes_tables_and_figures_and_a_rerun_trains_nothing(
    tone_manifest, tmp_path, monkeypatch):
  config = tiny_config(tone_manifest, tmp_path)
  workdir = str(tmp_path / 'ablate')
  study_dir = os.path.join(workdir, 'custom')
  trained = counting(monkeypatch, train, 'train_and_evaluate')
  result = ablate.run(config, workdir, [STUDY], seeds=[0], folds=[0])
  assert len(trained) == 2

  # The CSV: one row per variant, the run's own numbers beside the paper's.
  rows = read_csv(os.path.join(study_dir, 'results.csv'))
  assert [r['variant'] for r in rows] == ['softmax', 'center']
  assert [r['run'] for r in rows] == ['mel_lambda0_alpha0.5', 'mel_lambda0.3_alpha0.5']
  assert [(r['paper_setting'], float(r['paper_ua']), float(r['paper_wa']))
          for r in rows] == [('1', 63.80, 61.83), ('2', 66.86, 65.40)]
  for row, variant in zip(rows, STUDY.variants):
    fold_dir = os.path.join(study_dir, variant.name, 'seed0', 'fold0')
    with open(os.path.join(fold_dir, 'results.json')) as f:
      results = json.load(f)
    assert float(row['ua_mean']) == pytest.approx(100 * results['ua'], abs=1e-4)
    assert float(row['wa_mean']) == pytest.approx(100 * results['wa'], abs=1e-4)
    assert float(row['ua_std']) == 0.0 and row['runs'] == '1'
    # The embeddings come from the selected checkpoint: same test predictions.
    test = evaluate.run_embeddings(fold_dir)['test']
    np.testing.assert_array_equal(test['confusion'], results['confusion'])
    assert float(row['compactness_mean']) == pytest.approx(
        report.compactness(test['z'], test['labels']), rel=1e-3)
  assert result['custom']['rows'][0]['variant'] == 'softmax'

  # The Markdown table, the claims and the figures it links.
  with open(os.path.join(study_dir, 'results.md')) as f:
    md = f.read()
  assert '| `softmax` (setting 1) | mel | 0 | 0.5 | 1 |' in md
  assert '| 63.80 | 61.83 |' in md and '| 66.86 | 65.40 |' in md
  assert 'Centre loss on mel input (lambda 0.3 vs 0)' in md
  assert '(0.575)' in md  # the paper's Table 1 beside the measured matrix
  figures = ['ua_wa_bars.png', 'ua_wa_vs_lambda.png', 'pca_softmax.png',
             'pca_center.png', 'confusion_softmax.png', 'confusion_center.png']
  for name in figures:
    assert f']({name})' in md, name
    with open(os.path.join(study_dir, name), 'rb') as f:
      data = f.read()
    assert data[:8] == PNG_SIGNATURE and len(data) > 5000, name
  assert os.readlink(os.path.join(study_dir, 'softmax')) == os.path.join(
      '..', 'runs', 'mel_lambda0_alpha0.5')

  # A rerun, and another study sharing a run, train and cross-validate nothing.
  finished = sorted(glob.glob(os.path.join(workdir, 'runs', '*', '*', '*',
                                           'results.json')))
  assert len(finished) == 2
  mtimes = [os.path.getmtime(p) for p in finished]
  trained.clear()
  crossvalidated = counting(monkeypatch, crossval, 'run')
  shared = studies.Study('shared', 'the softmax run again', (
      studies.Variant('lambda0', 'mel', 0.0, 0.5),))
  again = ablate.run(config, workdir, [STUDY, shared], seeds=[0], folds=[0])
  assert trained == [] and crossvalidated == []
  assert again['custom']['rows'] == result['custom']['rows']
  assert again['shared']['rows'][0]['ua_mean'] == result['custom']['rows'][0]['ua_mean']
  assert [os.path.getmtime(p) for p in finished] == mtimes
  assert read_csv(os.path.join(study_dir, 'results.csv')) == rows

  # The same run under another config, or on an edited corpus, is refused,
  # not mixed in (a moved corpus is the same corpus).
  moved = tmp_path / 'moved'
  shutil.copytree(os.path.dirname(tone_manifest), moved)
  config.corpus_root = str(moved / 'manifest.csv')
  assert ablate.run(config, workdir, [STUDY], seeds=[0], folds=[0])['custom']['rows'] == (
      result['custom']['rows'])
  wav = moved / 's1_angry_0.wav'
  data = bytearray(wav.read_bytes())
  data[-400:] = bytes(400)  # the same size, other samples
  wav.write_bytes(bytes(data))
  with pytest.raises(JaxserError, match='another corpus'):
    ablate.run(config, workdir, [STUDY], seeds=[0], folds=[0])
  config.num_train_steps = 8
  with pytest.raises(JaxserError, match='another config.*num_train_steps'):
    ablate.run(config, workdir, [STUDY], seeds=[0], folds=[0])
  assert trained == []


def test_embeddings_are_recomputed_for_another_run(tone_manifest, tmp_path, monkeypatch):
  config = tiny_config(tone_manifest, tmp_path)
  config.num_train_steps = 6
  fold_dir = str(tmp_path / 'fold')
  train.train_and_evaluate(config, fold_dir)
  restored = counting(monkeypatch, evaluate, 'restore_selected')
  first = evaluate.run_embeddings(fold_dir)
  assert evaluate.run_embeddings(fold_dir)['test']['ua'] == first['test']['ua']
  assert len(restored) == 1  # the second call read the saved file
  # Another run in the same folder (--start_over, a rerun) makes them stale.
  train.train_and_evaluate(config.copy_and_resolve_references(), fold_dir, start_over=True)
  assert not os.path.exists(os.path.join(fold_dir, 'embeddings_test.npz'))
  evaluate.run_embeddings(fold_dir)
  results = os.path.join(fold_dir, 'results.json')
  with open(results) as f:
    saved = json.load(f)
  saved['selected_step'] = -1  # as if another run had selected another step
  with open(results, 'w') as f:
    json.dump(saved, f)
  evaluate.run_embeddings(fold_dir)
  assert len(restored) == 3


def test_command_line_flags():
  out = subprocess.run(
      [sys.executable, '-m', 'jaxser.ablate', '--config=jaxser/configs/tiny.py',
       '--workdir=/nonexistent', '--study=settings,nope'],
      cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert out.returncode != 0
  assert "unknown studies ['nope']" in out.stderr


def test_augment_study_augments_every_run_at_each_ratio(tone_manifest, tmp_path, monkeypatch):
  from jaxser import augment  # pylint: disable=g-import-not-at-top
  config = tiny_config(tone_manifest, tmp_path)
  config.augment.variants = 'none,gan_mi,noise'
  config.augment.gan_steps, config.augment.head_steps = 50, 20
  study = STUDY._replace(name='aug', augment_ratios=(1.0, 2.0))
  workdir = str(tmp_path / 'ablate')
  result = ablate.run(config, workdir, [study], seeds=[0], folds=[0])['aug']
  with open(os.path.join(workdir, 'aug', 'augment.json')) as f:
    saved = json.load(f)
  assert set(saved) == {'softmax', 'center'} and set(saved['center']) == {'1', '2'}
  for name, by_ratio in saved.items():
    for ratio, summary in by_ratio.items():
      fold_dir = os.path.join(workdir, 'aug', name, 'seed0', 'fold0')
      with open(os.path.join(fold_dir, 'augment', f'ratio{ratio}', 'results.json')) as f:
        run = json.load(f)
      # The summary is this run's augmentation at this ratio.
      assert summary['run_names'] == ['seed0/fold0']
      assert summary['settings']['ratio'] == float(ratio) == run['settings']['ratio']
      assert summary['ua_per_run']['gan_mi'] == [run['variants']['gan_mi']['ua']]
      assert run['variants']['noise']['synthetic'] == 4 * round(
          float(ratio) * run['sizes']['train'] / 4)
  with open(os.path.join(workdir, 'aug', 'results.md')) as f:
    md = f.read()
  assert '## Generative augmentation (Ahn et al. 2025)' in md
  assert '| `center` (λ 0.3) | 2 |' in md and '| `softmax` (λ 0) | 1 |' in md
  assert '- ratio 2, gan_mi: ' in md  # with minus without the centre loss
  figure = 'softmax/seed0/fold0/augment/ratio1/real_and_generated.png'
  assert f']({figure})' in md
  with open(os.path.join(workdir, 'aug', figure), 'rb') as f:
    assert f.read(8) == PNG_SIGNATURE
  # Again: nothing trained or augmented, the same report.
  monkeypatch.setattr(augment, 'run', lambda *a, **k: pytest.fail('augmented again'))
  trained = counting(monkeypatch, train, 'train_and_evaluate')
  again = ablate.run(config, workdir, [study], seeds=[0], folds=[0])['aug']
  assert trained == [] and again['augment'] == result['augment']


def test_variants_train_side_by_side_with_the_same_results(tone_manifest, tmp_path,
                                                           monkeypatch):
  from jaxser import stacked  # pylint: disable=g-import-not-at-top
  config = tiny_config(tone_manifest, tmp_path)
  alone = ablate.run(config, str(tmp_path / 'alone'), [STUDY], seeds=[0], folds=[0],
                     parallel_runs=1)['custom']['rows']
  stacks = counting(monkeypatch, stacked, 'train_and_evaluate')
  trained = counting(monkeypatch, train, 'train_and_evaluate')
  together = ablate.run(config, str(tmp_path / 'together'), [STUDY], seeds=[0], folds=[0],
                        parallel_runs=2)['custom']['rows']
  # lambda 0 and 0.3 differ only in the step's inputs: one stack of both.
  assert len(stacks) == 1 and len(stacks[0][0]) == 2 and trained == []
  for a, b in zip(alone, together):
    assert (a['variant'], a['ua_mean'], a['wa_mean']) == (b['variant'], b['ua_mean'],
                                                          b['wa_mean'])
    assert a['compactness_mean'] == pytest.approx(b['compactness_mean'], abs=1e-4)
