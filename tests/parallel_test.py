"""Data parallelism: 4 CPU devices, and 2 processes, give the 1-device result."""

import functools
import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent('''
    import jax, numpy as np
    from jaxser.configs import tiny
    from jaxser import config_lib, parallel, steps, train

    assert jax.device_count() == 4, jax.devices()
    config = tiny.get_config()
    model = config_lib.create_model(config, 4)
    rng = np.random.default_rng(0)
    batches = []
    for i in range(3):
      labels = rng.integers(0, 4, 8).astype(np.int32)
      if i == 1:  # class 3 appears only on the last device's shard
        labels[:] = rng.integers(0, 3, 8)
        labels[7] = 3
      mask = np.ones(8, bool)
      mask[6] = i != 2  # a padding example on one shard
      batches.append({
          'features': rng.standard_normal((8, 100, 64)).astype(np.float32),
          'frame_lengths': rng.integers(50, 101, 8).astype(np.int32),
          'labels': labels, 'mask': mask})

    def run(devices):
      mesh = parallel.make_mesh(devices)
      parallel.check_divisible(8, mesh)
      state = train.create_train_state(config, model, 64)
      state = parallel.replicate(state, mesh)
      # The package's steps (steps.make_steps), as train_and_evaluate runs them.
      train_fn, eval_fn = steps.make_steps(config, mesh)
      hparams = parallel.replicate(config_lib.step_hparams(
          config, np.array([1., 1.5, 1., 1.5])), mesh)
      for batch in batches:
        state, _ = train_fn(state, parallel.global_batch(batch, mesh), hparams)
      outputs = eval_fn(state, parallel.shard_batch(batches[0], mesh))
      assert len(outputs['logits'].sharding.device_set) == len(devices)
      return jax.device_get(state), jax.device_get(outputs)

    (one, one_out), (four, four_out) = run(jax.devices()[:1]), run(jax.devices())
    np.testing.assert_allclose(one_out['logits'], four_out['logits'], atol=1e-5)
    diffs = jax.tree_util.tree_leaves(jax.tree_util.tree_map(
        lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
        one.params, four.params))
    centre_diff = float(np.max(np.abs(one.centers.centers - four.centers.centers)))
    assert np.abs(one.centers.centers[3]).max() > 0  # class 3 did update
    print('PARAM_DIFF', max(diffs), 'CENTRE_DIFF', centre_diff)
    assert max(diffs) <= 1e-5 and centre_diff <= 1e-5
    # Features of a batch split over the devices, with the package's mesh
    # and with an explicitly sharded one, equal those of one device.
    from jaxser import features
    waves = rng.standard_normal((8, 64000)).astype(np.float32)  # 2 chunks of 4
    lengths = rng.integers(40000, 64001, 8).astype(np.int32)
    single, _ = features.log_mel(waves, lengths)
    explicit = jax.make_mesh((4,), (parallel.DATA_AXIS,),
                             axis_types=(jax.sharding.AxisType.Explicit,))
    for mesh in (parallel.make_mesh(), explicit):
      split = jax.sharding.NamedSharding(
          mesh, jax.sharding.PartitionSpec(parallel.DATA_AXIS))
      mel, _ = features.log_mel(jax.device_put(waves, split), jax.device_put(lengths, split))
      np.testing.assert_allclose(np.asarray(mel), np.asarray(single), atol=1e-4)
    # Waveform batches featurised and augmented in the step: the same on
    # 4 devices as on 1.
    from jaxser import standardize
    wave_config = tiny.get_config()
    wave_config.wave_augment.update(noise_probability=0.5, speed_factors='0.9,1.1',
                                    reverb_probability=0.5)
    stats = standardize.Standardizer(np.full(64, -40.0, np.float32),
                                     np.full(64, 20.0, np.float32))
    wave_batch = {'waveforms': waves[:, :(100 + 8) * 160], 'labels': batches[0]['labels'],
                  'num_samples': rng.integers(8000, 16001, 8).astype(np.int32),
                  'mask': batches[0]['mask']}

    def wave_run(devices):
      mesh = parallel.make_mesh(devices)
      state = parallel.replicate(train.create_train_state(wave_config, model, 64), mesh)
      train_fn, _ = steps.make_steps(wave_config, mesh)
      hparams = parallel.replicate(config_lib.step_hparams(
          wave_config, np.ones(4), stats), mesh)
      for _ in range(2):
        state, metrics = train_fn(state, parallel.global_batch(wave_batch, mesh), hparams)
      return jax.device_get((state.params, metrics['loss']))

    (one_params, one_loss), (four_params, four_loss) = (
        wave_run(jax.devices()[:1]), wave_run(jax.devices()))
    wave_diff = max(jax.tree_util.tree_leaves(jax.tree_util.tree_map(
        lambda a, b: float(np.max(np.abs(a - b))), one_params, four_params)))
    print('WAVE_PARAM_DIFF', wave_diff, 'LOSS', one_loss, four_loss)
    assert wave_diff <= 1e-4 and abs(one_loss - four_loss) <= 1e-4
    try:
      parallel.check_divisible(6, parallel.make_mesh(), 'config.batch_size')
    except Exception as e:
      assert 'config.batch_size=6: must be divisible by the 4 devices' in str(e), e
    else:
      raise AssertionError('batch 6 on 4 devices was accepted')
''')


def test_four_devices_equal_one_device():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4',
             JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', SCRIPT], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'PARAM_DIFF' in out.stdout


# The real CLI, recording after every step this process's copy of the
# parameters and centres.
RECORDING_DRIVER = textwrap.dedent('''
    import os
    from absl import app
    import jax
    import numpy as np
    from jaxser import cli, main, steps
    make_steps = steps.make_steps

    def recording_make_steps(config, mesh=None):
      train_fn, eval_fn = make_steps(config, mesh)
      def step(state, batch, hparams):
        state, metrics = train_fn(state, batch, hparams)
        leaves = jax.tree_util.tree_leaves((state.params, state.centers.centers))
        np.savez(os.environ['STATE_OUT'],
                 *[np.asarray(leaf.addressable_data(0)) for leaf in leaves])
        return state, metrics
      return step, eval_fn

    steps.make_steps = recording_make_steps
    cli.run(main.main, main.define_flags)
''')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _cli(tone_manifest, tmp_path, workdir, *extra):
  """The training command line, recording its state after every step."""
  return [sys.executable, '-c', RECORDING_DRIVER, '--config=jaxser/configs/tiny.py',
          f'--workdir={workdir}', '--config.corpus=manifest',
          f'--config.corpus_root={tone_manifest}',
          f'--config.cache_dir={tmp_path / "cache"}', '--config.plots=False',
          *extra]


def _check_prediction_on_four_devices(env, tmp_path, tone_manifest):
  """Prediction on 4 devices equals one device's; a batch of 6 is refused."""
  wavs = sorted(str(p) for p in pathlib.Path(tone_manifest).parent.glob('*.wav'))[:6]
  four_devices = dict(env, XLA_FLAGS='--xla_force_host_platform_device_count=4')

  def predict(run_env, batch_size):
    return subprocess.run(
        [sys.executable, '-m', 'jaxser.predict', f'--workdir={tmp_path / "four"}',
         f'--batch_size={batch_size}', *wavs], cwd=ROOT, env=run_env,
        capture_output=True, text=True, timeout=600)

  on_four, on_one = predict(four_devices, 4), predict(env, 4)
  assert on_four.returncode == 0 and on_one.returncode == 0, on_four.stderr[-3000:]
  rows = [[json.loads(line) for line in out.stdout.splitlines()]
          for out in (on_four, on_one)]
  assert len(rows[0]) == len(wavs)
  for a, b in zip(*rows):
    assert a['emotion'] == b['emotion']
    np.testing.assert_allclose(list(a['probabilities'].values()),
                               list(b['probabilities'].values()), atol=1e-5)
  refused = predict(four_devices, 6)
  assert refused.returncode != 0
  last = refused.stderr.strip().splitlines()[-1]
  assert last.startswith('jaxser: --batch_size=6: must be divisible by the 4 '
                         'devices'), refused.stderr[-3000:]
  assert 'Traceback' not in refused.stderr


def test_two_processes_and_four_devices_train_as_one(tone_manifest, tmp_path):
  """The CLI: 2 processes (jax.distributed on loopback) == 4 devices == 1."""
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)
  cli = functools.partial(_cli, tone_manifest, tmp_path)

  # One process first: the reference, and it fills the feature cache.
  single = subprocess.run(cli(tmp_path / 'one'), cwd=ROOT, capture_output=True,
                          text=True, timeout=600,
                          env=dict(env, STATE_OUT=str(tmp_path / 'one.npz')))
  assert single.returncode == 0, single.stderr[-3000:]

  port = _free_port()
  procs = [subprocess.Popen(
      cli(tmp_path / 'two', f'--coordinator_address=127.0.0.1:{port}',
          '--num_processes=2', f'--process_id={i}'),
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env=dict(env, STATE_OUT=str(tmp_path / f'two{i}.npz'))) for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]

  one = np.load(tmp_path / 'one.npz')
  two = [np.load(tmp_path / f'two{i}.npz') for i in range(2)]
  assert len(one.files) == len(two[0].files) > 2
  for key in one.files:
    # The two processes hold the same replicated state...
    np.testing.assert_array_equal(two[0][key], two[1][key])
    # ...the state one process reaches on the same global batches.
    np.testing.assert_allclose(two[0][key], one[key], atol=1e-5, rtol=1e-5)

  # The same command on 4 (forced) CPU devices of one process.
  four = subprocess.run(
      cli(tmp_path / 'four'), cwd=ROOT, capture_output=True, text=True,
      timeout=600, env=dict(env, STATE_OUT=str(tmp_path / 'four.npz'),
                            XLA_FLAGS='--xla_force_host_platform_device_count=4'))
  assert four.returncode == 0, four.stderr[-3000:]
  assert '4 devices' in four.stderr, four.stderr[-3000:]
  four = np.load(tmp_path / 'four.npz')
  for key in one.files:
    np.testing.assert_allclose(four[key], one[key], atol=1e-5, rtol=1e-5)

  _check_prediction_on_four_devices(env, tmp_path, tone_manifest)

  # Process 0 alone wrote the metrics (each step once) and the results, and
  # only it printed the summary.
  steps = [json.loads(line)['step'] for line in
           open(tmp_path / 'two' / 'metrics.jsonl') if '"train"' in line]
  assert steps == sorted(set(steps)) and steps
  results = json.load(open(tmp_path / 'two' / 'results.json'))
  reference = json.load(open(tmp_path / 'one' / 'results.json'))
  assert results['selected_step'] == reference['selected_step']
  assert abs(results['ua'] - reference['ua']) < 1e-6
  assert 'test UA' in outs[0][0] and 'test UA' not in outs[1][0]
  assert os.path.isdir(tmp_path / 'two' / 'best')
