"""crossval's division of the corpus over seeds: dealt anew, or once."""

import numpy as np

from jaxser import crossval
from jaxser import prepare
from jaxser import protocols
from jaxser import train
from jaxser.configs import tiny


def _splits(config, monkeypatch, workdir, **kwargs):
  """`{seed: test ids}` crossval would train on, and its summary (no training)."""
  utterances, labels, label_map = prepare.load_corpus(config)
  seen = {}

  def fake_train(fold_config, fold_dir, start_over=False):
    del fold_dir, start_over
    fold = protocols.make_folds(fold_config.protocol, utterances, labels,
                                seed=fold_config.split_seed)[fold_config.fold]
    seen[fold_config.seed] = sorted(utterances[i].id for i in fold.test)
    n = label_map.num_classes
    return {'fold': fold.name, 'ua': 0.5, 'wa': 0.5, 'classes': list(label_map.classes),
            'confusion': np.eye(n, dtype=int).tolist()}

  monkeypatch.setattr(train, 'train_and_evaluate', fake_train)
  summary = crossval.run(config, str(workdir), [0, 1, 2], [0], **kwargs)
  return seen, summary


def test_a_fixed_division_gives_every_seed_the_same_split(tone_manifest, tmp_path,
                                                          monkeypatch):
  config = tiny.get_config()
  config.corpus, config.corpus_root = 'manifest', tone_manifest
  config.cache_dir = str(tmp_path / 'cache')
  per_seed, summary = _splits(config, monkeypatch, tmp_path / 'a')
  assert summary['split_seed'] is None
  assert len({tuple(ids) for ids in per_seed.values()}) > 1  # dealt anew
  fixed, summary = _splits(config, monkeypatch, tmp_path / 'b', split_seed=7)
  assert summary['split_seed'] == 7
  assert len({tuple(ids) for ids in fixed.values()}) == 1  # one division
  with open(tmp_path / 'b' / 'summary.md') as f:
    assert 'Subsets dealt once (split seed 7) for every seed.' in f.read()


def test_folds_and_seeds_share_one_train_program_per_bucket(tmp_path):
  from conftest import write_tone_corpus  # pylint: disable=g-import-not-at-top
  from jaxser import parallel  # pylint: disable=g-import-not-at-top
  from jaxser import steps  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.corpus = 'manifest'
  config.corpus_root = write_tone_corpus(str(tmp_path / 'tones'), per_class_speaker=6)
  config.cache_dir, config.plots = str(tmp_path / 'cache'), False
  config.protocol = 'paper'  # 5 folds, each with its own class weights
  config.features.max_frames, config.buckets = 200, (200,)
  config.num_train_steps = config.eval_every_steps = config.checkpoint_every_steps = 4
  # The jitted steps every run gets, one run at a time and five side by side.
  train_fn, eval_fn = steps.make_steps(config)
  stacked_fn = steps.make_stacked_train_step(config, parallel.make_run_mesh(5))
  for fn in (train_fn, eval_fn, stacked_fn):
    fn.clear_cache()
  alone = crossval.run(config, str(tmp_path / 'alone'), [0, 1], None, parallel_runs=1)
  assert len(alone['folds']) == 10
  weights = set()
  for fold in range(5):
    fold_config = config.copy_and_resolve_references()
    fold_config.fold = fold
    data = prepare.prepare(fold_config, str(tmp_path / 'alone' / 'seed0' / f'fold{fold}'))
    weights.add(tuple(np.round(data.class_weights, 6)))
  assert len(weights) > 1  # the folds' class weights differ: not constants
  # Ten runs, one train program (one bucket) and one eval program.
  assert train_fn._cache_size() == eval_fn._cache_size() == len(config.buckets)
  # The same ten runs, five side by side: one stacked program, the same results.
  together = crossval.run(config, str(tmp_path / 'stacked'), [0, 1], None, parallel_runs=5)
  assert stacked_fn._cache_size() == len(config.buckets)
  assert train_fn._cache_size() == len(config.buckets)  # no run trained alone
  assert [(f['seed'], f['fold'], f['ua'], f['wa']) for f in together['folds']] == [
      (f['seed'], f['fold'], f['ua'], f['wa']) for f in alone['folds']]
