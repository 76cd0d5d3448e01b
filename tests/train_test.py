"""The main job end to end on a tiny config: metrics, checkpoints, resume, predict."""

import json
import os
import subprocess
import sys

from absl import logging
import jax
import numpy as np

from jaxser.configs import tiny
from jaxser import config_lib
from jaxser import prepare
from jaxser import input_pipeline
from jaxser import evaluate
from jaxser import Classifier
from jaxser import parallel
from jaxser import steps
from jaxser import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(manifest, tmp_path, **overrides):
  config = tiny.get_config()
  config.corpus = 'manifest'
  config.corpus_root = manifest
  config.cache_dir = str(tmp_path / 'cache')
  config.plots = False
  for key, value in overrides.items():
    config[key] = value
  return config


def read_metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_end_to_end_metrics_checkpoints_and_predict(tone_manifest, tmp_path):
  config = tiny_config(tone_manifest, tmp_path, plots=True)
  workdir = str(tmp_path / 'run')
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.INFO)  # as the commands run (the log file's level)
  try:
    results = train.train_and_evaluate(config, workdir)
  finally:
    logging.set_verbosity(verbosity)
  records = read_metrics(workdir)
  splits = {r['split'] for r in records}
  assert splits == {'train', 'dev', 'test'}
  train_lines = [r for r in records if r['split'] == 'train']
  assert [r['step'] for r in train_lines] == [4, 8, 12]
  assert all(np.isfinite(r['loss']) for r in train_lines)
  assert 0.0 <= results['ua'] <= 1.0 and 0.0 <= results['wa'] <= 1.0
  cm = np.asarray(results['confusion'])
  assert cm.shape == (4, 4) and cm.sum() == results['split_sizes']['test']
  assert os.listdir(os.path.join(workdir, 'checkpoints'))
  assert os.listdir(os.path.join(workdir, 'best'))
  for name in ('confusion.png', 'embeddings_pca.png', 'curves.png'):
    assert os.path.getsize(os.path.join(workdir, name)) > 5000, name
  with open(os.path.join(workdir, 'results.json')) as f:
    saved = json.load(f)
  assert saved['test']['confusion'] == results['confusion']
  # Where the numbers came from: the whole config, versions, devices, times.
  made = saved['provenance']
  assert made['config'] == json.loads(config.to_json_best_effort())
  assert made['versions']['jax'] == jax.__version__ and made['versions']['flax']
  assert made['devices'] == [f'{d.platform}:{d.id} {d.device_kind}' for d in jax.devices()]
  assert made['started'] <= made['finished']
  with open(os.path.join(workdir, 'log.txt')) as f:
    log = f.read()
  assert 'compiling the train step for batches of' in log and 'test UA' in log
  assert any('hparams' in folder for _, folders, _ in
             os.walk(os.path.join(workdir, 'tensorboard')) for folder in folders)

  # Predict through the CLI on one file of the corpus and one broken file.
  wav = os.path.join(os.path.dirname(tone_manifest), 's1_angry_0.wav')
  broken = tmp_path / 'broken.wav'
  broken.write_bytes(b'not audio')
  out = subprocess.run(
      [sys.executable, '-m', 'jaxser.predict', f'--workdir={workdir}',
       f'--embeddings={tmp_path / "z.npy"}', '--allow_failures', wav, str(broken)],
      capture_output=True, text=True, cwd=ROOT, check=True)
  lines = [json.loads(line) for line in out.stdout.splitlines()]
  assert lines[1]['file'] == str(broken) and 'unreadable' in lines[1]['error']
  assert lines[0]['emotion'] in ('neutral', 'angry', 'happy', 'sad')
  assert abs(sum(lines[0]['probabilities'].values()) - 1.0) < 1e-4
  assert np.load(tmp_path / 'z.npy').shape == (1, config.model.embedding_dim)


def test_classifier_matches_eval_of_the_best_checkpoint(tone_manifest, tmp_path):
  config = tiny_config(tone_manifest, tmp_path)
  workdir = str(tmp_path / 'run')
  results = train.train_and_evaluate(config, workdir)
  # The test split as the run evaluated it (its selected parameters)...
  data = prepare.prepare(config, workdir)
  _, state = evaluate.restore_selected(workdir)
  mesh = parallel.make_mesh()
  metrics, out = evaluate.evaluate(
      evaluate.make_eval_step(mesh), parallel.replicate(state, mesh), data.test,
      batch_size=config.eval_batch_size, buckets=tuple(config.buckets),
      num_classes=4, mesh=mesh)
  assert metrics['ua'] == results['ua']
  # ...and as the classifier gives it, from the audio files.
  classifier = Classifier.from_workdir(workdir)
  paths = [data.utterances[int(i)].path for i in data.test.indices]
  predictions = [classifier.classify_file(p, embeddings=True) for p in paths]
  np.testing.assert_allclose([list(p.scores.values()) for p in predictions],
                             jax.nn.softmax(out['logits']), atol=1e-5)
  np.testing.assert_allclose([p.embedding for p in predictions], out['embeddings'],
                             atol=1e-4)


def test_compiled_train_steps_bounded_by_buckets(tone_manifest, tmp_path):
  config = tiny_config(tone_manifest, tmp_path, batch_size=2,
                       buckets=(60, 100, 140, 180, 300))
  data = prepare.prepare(config, str(tmp_path / 'run'))
  model = config_lib.create_model(config, 4)
  mesh = parallel.make_mesh()
  # Placed as the steps keep it (replicated), as train_and_evaluate does;
  # otherwise the first call compiles once more for the unplaced state.
  state = parallel.replicate(
      train.create_train_state(config, model, data.feature_params.num_bins), mesh)
  train_fn, _ = steps.make_steps(config, mesh)
  hparams = parallel.replicate(config_lib.step_hparams(config, data.class_weights), mesh)
  dataset = input_pipeline.train_dataset(data.train, batch_size=config.batch_size,
                                         buckets=config.buckets, seed=0)
  seen = set()
  compiled = train_fn._cache_size()  # the step is shared: other tests' programs
  for i in range(30):
    batch = dataset[i]
    seen.add(batch['features'].shape[1])
    state, _ = train_fn(state, batch, hparams)
  jax.block_until_ready(state.params)
  assert len(seen) >= 3  # the data really spans several buckets
  assert train_fn._cache_size() - compiled <= len(config.buckets)
  assert train_fn._cache_size() - compiled <= len(seen)


def test_resume_equals_uninterrupted_run(tone_manifest, tmp_path):
  config = tiny_config(tone_manifest, tmp_path)
  straight = str(tmp_path / 'straight')
  resumed = str(tmp_path / 'resumed')
  train.train_and_evaluate(config, straight)
  assert train.train_and_evaluate(config, resumed, interrupt_at_step=6) is None
  assert max(r['step'] for r in read_metrics(resumed)) <= 6
  train.train_and_evaluate(config, resumed)
  assert read_metrics(straight) == read_metrics(resumed)
  from jaxser import checkpoint
  a = checkpoint.Checkpoints(straight)
  b = checkpoint.Checkpoints(resumed)
  model = config_lib.create_model(config, 4)
  bins = config_lib.feature_params(config).num_bins
  target = checkpoint.abstract(train.create_train_state(config, model, bins))
  sa, _ = a.restore(checkpoint.LATEST, target)
  sb, _ = b.restore(checkpoint.LATEST, target)
  assert int(sa.step) == int(sb.step) == config.num_train_steps
  jax.tree_util.tree_map(np.testing.assert_array_equal, sa.params, sb.params)
  np.testing.assert_array_equal(sa.centers.centers, sb.centers.centers)
  with open(os.path.join(straight, 'results.json')) as f1, \
       open(os.path.join(resumed, 'results.json')) as f2:
    first, second = json.load(f1), json.load(f2)
  # All but where and when they ran (times differ; nothing else may).
  times = ('started', 'finished')
  assert ({k: v for k, v in first.pop('provenance').items() if k not in times} ==
          {k: v for k, v in second.pop('provenance').items() if k not in times})
  assert first == second


def test_main_cli_runs_and_reports(tone_manifest, tmp_path):
  workdir = tmp_path / 'cli'
  out = subprocess.run(
      [sys.executable, '-m', 'jaxser.main', '--config=jaxser/configs/tiny.py',
       f'--workdir={workdir}', '--config.corpus=manifest',
       f'--config.corpus_root={tone_manifest}', f'--config.cache_dir={tmp_path / "c"}',
       '--config.plots=False', '--config.num_train_steps=4'],
      capture_output=True, text=True, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'test UA' in out.stdout
  assert (workdir / 'results.json').exists()


def test_cli_rejects_bad_config_field(tone_manifest, tmp_path):
  out = subprocess.run(
      [sys.executable, '-m', 'jaxser.main', '--config=jaxser/configs/tiny.py',
       f'--workdir={tmp_path / "w"}', '--config.corpus=manifest',
       f'--config.corpus_root={tone_manifest}', '--config.center_alpha=1.5'],
      capture_output=True, text=True, cwd=ROOT)
  assert out.returncode != 0
  assert 'center_alpha' in out.stderr and 'alpha must be in (0, 1]' in out.stderr


def test_eval_cadences():
  config = tiny.get_config()
  config.num_train_steps, config.eval_start_step, config.eval_every_steps = 3520, 200, 11
  def steps(cadence):
    config.eval_cadence = cadence
    return [s for s in range(1, 3521) if train.is_eval_step(config, s)]
  jaxser_steps, code_steps = steps('jaxser'), steps('code')
  assert jaxser_steps[:3] == [211, 222, 233] and jaxser_steps[-2:] == [3511, 3520]
  # The authors' loop: update i (from 0) evaluated when i % 11 == 0, i > 200.
  assert code_steps == [i + 1 for i in range(3520) if i % 11 == 0 and i > 200]
  assert code_steps[:2] == [210, 221] and code_steps[-1] == 3510
