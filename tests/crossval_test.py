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
