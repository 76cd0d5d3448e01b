"""jaxser.score: a trained run scored on a whole other corpus."""

import json
import os
import subprocess
import sys

import numpy as np

from conftest import write_tone_corpus
from jaxser import score
from jaxser import train
from jaxser.configs import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_run_is_scored_on_every_utterance_of_another_corpus(tone_manifest, tmp_path):
  config = tiny.get_config()
  config.corpus, config.corpus_root = 'manifest', tone_manifest
  config.cache_dir, config.plots = str(tmp_path / 'cache'), False
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  other = tiny.get_config()
  other.corpus = 'manifest'
  other.corpus_root = write_tone_corpus(str(tmp_path / 'other'), seed=5,
                                        speakers=('t1', 't2', 't3'))
  results = score.score(workdir, other, 'tones')
  confusion = np.asarray(results['confusion'])
  assert results['utterances'] == confusion.sum() == 3 * 4 * 2  # every utterance
  assert results['true_counts'] == confusion.sum(1).tolist()
  assert results['predicted_counts'] == confusion.sum(0).tolist()
  assert results['ua'] == np.mean(np.diag(confusion) / confusion.sum(1))
  with open(os.path.join(workdir, 'score_tones.json')) as f:
    assert json.load(f)['ua'] == results['ua']
  assert 'predicted' in score.report(results)


def test_the_command_needs_a_run(tmp_path):
  out = subprocess.run([sys.executable, '-m', 'jaxser.score', f'--workdir={tmp_path}',
                        '--config=tiny'], capture_output=True, text=True, cwd=ROOT)
  assert out.returncode == 1
  assert out.stderr.strip().splitlines()[-1].startswith(f'jaxser: {tmp_path}')
