"""jaxser.export: the exported model runs without the training stack and
gives the workdir's probabilities."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxser import Classifier
from jaxser.configs import tiny
from jaxser import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Loads the export and classifies the files given, with everything of the
# training stack made unimportable: it prints the scores and embeddings.
LOADER = '''
import json, sys
class Block:
  def find_spec(self, name, path=None, target=None):
    top = name.split('.')[0]
    if top in ('flax', 'orbax', 'ml_collections', 'optax', 'grain', 'tensorboardX') or name in (
        'jaxser.models', 'jaxser.train', 'jaxser.config_lib', 'jaxser.checkpoint',
        'jaxser.evaluate', 'jaxser.classifier', 'jaxser.export', 'jaxser.gru'):
      raise ImportError(f'{name} must not be needed by an exported model')
sys.meta_path.insert(0, Block())
from jaxser import exported
model = exported.load(sys.argv[1])
out = [model.classify_file(path, embeddings=True) for path in sys.argv[2:]]
print(json.dumps([[list(p.scores.values()), p.embedding.tolist()] for p in out]))
'''


@pytest.fixture(scope='module')
def run(tone_manifest, tmp_path_factory):
  root = tmp_path_factory.mktemp('export')
  config = tiny.get_config()
  config.corpus, config.corpus_root = 'manifest', tone_manifest
  config.cache_dir, config.plots = str(root / 'cache'), False
  config.buckets = (60, 100, 300)  # the tone files (0.4-1.6 s) span them
  config.model.utterance_norm = 'mean'  # exported with the model, as predict has it
  train.train_and_evaluate(config, str(root / 'run'))
  return root / 'run'


def test_exported_model_equals_the_workdir_without_flax(run, tone_manifest, tmp_path):
  output = tmp_path / 'model.jaxser'
  made = subprocess.run([sys.executable, '-m', 'jaxser.export', f'--workdir={run}',
                         f'--output={output}'], capture_output=True, text=True,
                        cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert made.returncode == 0, made.stderr[-3000:]
  assert 'programs (buckets [60, 100, 300] frames) for cpu, cuda, tpu' in made.stdout
  folder = os.path.dirname(tone_manifest)
  files = sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith('.wav'))
  loaded = subprocess.run([sys.executable, '-c', LOADER, str(output), *files],
                          capture_output=True, text=True, cwd=tmp_path,
                          env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert loaded.returncode == 0, loaded.stderr[-3000:]
  got = json.loads(loaded.stdout.strip().splitlines()[-1])
  classifier = Classifier.from_workdir(str(run))
  frames = set()
  for path, (scores, z) in zip(files, got):
    want = classifier.classify_file(path, embeddings=True)
    np.testing.assert_allclose(scores, list(want.scores.values()), rtol=0, atol=1e-5)
    np.testing.assert_allclose(z, want.embedding, rtol=0, atol=1e-5)
    frames.add(len(classifier.features([__import__('jaxser').audio.load(path)])[0]))
  assert min(frames) <= 60 < max(frames)  # more than one bucket's program ran


def test_export_refuses_what_it_cannot_do(run, tmp_path):
  from jaxser import exported  # pylint: disable=g-import-not-at-top
  (tmp_path / 'not.jaxser').write_bytes(b'not a zip')
  with pytest.raises(ValueError, match='not a jaxser exported model'):
    exported.load(tmp_path / 'not.jaxser')
  out = subprocess.run([sys.executable, '-m', 'jaxser.export', f'--workdir={run}'],
                       capture_output=True, text=True, cwd=ROOT)
  assert out.returncode == 1 and out.stderr.strip().endswith('jaxser: --output is required')


def test_exported_model_refuses_bad_audio(run, tmp_path):
  from jaxser import export, exported  # pylint: disable=g-import-not-at-top
  from jaxser.errors import AudioError  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'model.jaxser'
  export.export(str(run), str(path), platforms=('cpu',))
  model = exported.load(path)
  loud = (np.random.default_rng(0).standard_normal(16000) * 1e20).astype(np.float32)
  with pytest.raises(AudioError, match="waveform 1: non-finite features: the audio's power"):
    model.classify([np.zeros(16000, np.float32), loud], 16000)
  with pytest.raises(AudioError, match='the waveform: 1 non-finite'):
    model.classify(np.array([0.0, np.nan] + [0.0] * 800), 16000)
