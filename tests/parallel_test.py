"""Data parallelism: 4 CPU devices give the 1-device result, centres included."""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent('''
    import functools
    import jax, jax.numpy as jnp, numpy as np
    from configs import tiny
    from jaxser import parallel, train

    assert jax.device_count() == 4, jax.devices()
    config = tiny.get_config()
    model = train.create_model(config, 4)
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
      step = functools.partial(train.train_step, class_weights=jnp.array([1., 1.5, 1., 1.5]),
                               lam=0.3, alpha=0.5, warmup_steps=1, rule='ema')
      fn = jax.jit(step, in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
                   out_shardings=parallel.replicated(mesh), donate_argnums=0)
      for batch in batches:
        state, _ = fn(state, parallel.global_batch(batch, mesh))
      return jax.device_get(state)

    one = run(jax.devices()[:1])
    four = run(jax.devices())
    diffs = jax.tree_util.tree_leaves(jax.tree_util.tree_map(
        lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
        one.params, four.params))
    centre_diff = float(np.max(np.abs(one.centers.centers - four.centers.centers)))
    assert np.abs(one.centers.centers[3]).max() > 0  # class 3 did update
    print('PARAM_DIFF', max(diffs), 'CENTRE_DIFF', centre_diff)
    assert max(diffs) <= 1e-5 and centre_diff <= 1e-5
    try:
      parallel.check_divisible(6, parallel.make_mesh())
    except Exception as e:
      assert 'divisible by the 4 devices' in str(e), e
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
