"""Shared fixtures: a small learnable corpus written as a CSV manifest; a
check that a run resumes exactly."""

import csv
import json
import os

import numpy as np
import pytest
import soundfile as sf

from jaxser.data.records import PAPER_4CLASS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = PAPER_4CLASS.classes
# A rough prosody per class: pitch (Hz) and loudness, so a model can learn it.
_TONES = {'neutral': (140, 0.10), 'angry': (260, 0.40), 'happy': (220, 0.25),
          'sad': (110, 0.05)}


def write_tone_corpus(folder, *, per_class_speaker=2, speakers=('s1', 's2', 's3', 's4'),
                      seed=0) -> str:
  """Harmonic tones with class-dependent pitch and level; returns the CSV path."""
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  rows = []
  for s, speaker in enumerate(speakers):
    for label in CLASSES:
      for k in range(per_class_speaker):
        f0, level = _TONES[label]
        f0 *= rng.uniform(0.9, 1.1)
        n = int(rng.uniform(0.4, 1.6) * 16000)
        t = np.arange(n) / 16000
        y = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 4))
        y = level * y / 2 + 0.005 * rng.standard_normal(n)
        name = f'{speaker}_{label}_{k}.wav'
        sf.write(os.path.join(folder, name), y.astype(np.float32), 16000)
        rows.append({'path': name, 'label': label, 'speaker': speaker,
                     'session': f'S{s // 2 + 1}', 'gender': 'FM'[s % 2]})
  path = os.path.join(folder, 'manifest.csv')
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  return path


@pytest.fixture(scope='session')
def tone_manifest(tmp_path_factory):
  return write_tone_corpus(str(tmp_path_factory.mktemp('tones')))


@pytest.fixture(scope='module')
def env(tmp_path_factory):
  """The environment of a module's CLI subprocesses: CPU, one shared JAX
  compilation cache (only the first run compiles; the others load its
  programs, which also makes their results comparable bit for bit)."""
  cache = tmp_path_factory.mktemp('jax_compilation_cache')
  return dict(os.environ, JAX_PLATFORMS='cpu', JAX_COMPILATION_CACHE_DIR=str(cache),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
              JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')


def tiny_run_config(tone_manifest, tmp_path):
  """The tiny config on the tone corpus, its cache in `tmp_path`, no plots."""
  from jaxser.configs import tiny  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.corpus, config.corpus_root = 'manifest', tone_manifest
  config.cache_dir, config.plots = str(tmp_path / 'cache'), False
  return config


def assert_resumes_exactly(config, tmp_path):
  """Trains straight and killed at step 6 then resumed: the same metrics and
  results. Returns `first(name)`, the first metrics line of a run folder."""
  from jaxser import train  # pylint: disable=g-import-not-at-top
  straight = train.train_and_evaluate(config, str(tmp_path / 'straight'))
  assert train.train_and_evaluate(config, str(tmp_path / 'resumed'),
                                  interrupt_at_step=6) is None
  resumed = train.train_and_evaluate(config, str(tmp_path / 'resumed'))
  read = lambda d: (tmp_path / d / 'metrics.jsonl').read_text()
  assert read('straight') == read('resumed')
  assert straight['ua'] == resumed['ua'] and straight['confusion'] == resumed['confusion']
  return lambda d: json.loads(read(d).splitlines()[0])
