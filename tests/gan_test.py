"""jaxser.gan: the MI bound by hand, a toy mixture learned with the MI term,
determinism and resume."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxser import gan

NOISE, CLASSES = 4, 4
MEANS = np.array([[3.0, 0.0], [0.0, 3.0], [-3.0, 0.0], [0.0, -3.0]])


def test_mutual_information_bound_by_hand():
  codes = jnp.array([0, 1, 2, 3, 0, 1, 2, 3])
  prior = jnp.full(4, 0.25)
  certain = 50.0 * jax.nn.one_hot(codes, 4)  # a perfect Q
  assert float(gan.mutual_information_bound(certain, codes, prior)) == pytest.approx(
      math.log(4), abs=1e-6)
  uniform = jnp.zeros((8, 4))  # a Q that says nothing
  assert float(gan.mutual_information_bound(uniform, codes, prior)) == pytest.approx(0, abs=1e-6)
  # A skewed prior: H(c) of (0.5, 0.5, 0, 0) is ln 2.
  assert float(gan.entropy(jnp.array([0.5, 0.5, 0, 0]))) == pytest.approx(math.log(2))
  # Never above H(c): a wrong but certain Q goes far below 0.
  wrong = 50.0 * jax.nn.one_hot((codes + 1) % 4, 4)
  assert float(gan.mutual_information_bound(wrong, codes, prior)) < 0


def _toy(seed=0, n=512):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, CLASSES, n)
  return (MEANS[labels] + 0.5 * rng.standard_normal((n, 2))).astype(np.float32), labels


def _train(info_weight, steps, seed=0, state=None, start=0):
  z, labels = _toy()
  generator = gan.Generator(dim=2, num_classes=CLASSES, hidden=64)
  discriminator = gan.Discriminator(num_classes=CLASSES, hidden=64)
  g_tx, d_tx = optax.adam(2e-3, b1=0.5), optax.adam(2e-3, b1=0.5)
  if state is None:
    state = gan.init_state(jax.random.key(seed), generator, discriminator, g_tx, d_tx,
                           noise_dim=NOISE)
  step = gan.make_train_step(generator=generator, discriminator=discriminator,
                             g_tx=g_tx, d_tx=d_tx, noise_dim=NOISE,
                             prior=np.full(CLASSES, 1 / CLASSES),
                             info_weight=info_weight)
  rng = np.random.default_rng(seed)
  for i in range(start + steps):
    rows = rng.integers(0, len(z), 64)  # the same batches whatever `start`
    if i >= start:
      state, metrics = step(state, z[rows], labels[rows])
  return state, metrics, generator


def _per_class_accuracy(state, generator, seed=1):
  """Generated samples classified by the nearest real class mean."""
  codes = jnp.repeat(jnp.arange(CLASSES), 200)
  fake = np.asarray(gan.sample(generator, state.g_params, jax.random.key(seed), codes,
                               noise_dim=NOISE))
  z, labels = _toy(seed=2)
  centres = np.stack([z[labels == c].mean(0) for c in range(CLASSES)])
  predicted = np.argmin(((fake[:, None] - centres[None]) ** 2).sum(-1), axis=1)
  return [float(np.mean(predicted[codes == c] == c)) for c in range(CLASSES)]


def test_the_mi_term_makes_codes_mean_their_class():
  with_mi, metrics_mi, generator = _train(info_weight=1.0, steps=600)
  without, metrics_plain, _ = _train(info_weight=0.0, steps=600)
  accuracy = _per_class_accuracy(with_mi, generator)
  assert min(accuracy) > 0.9, accuracy
  # The bound, on fresh samples judged by each run's own Q.
  def bound(state):
    codes = jnp.repeat(jnp.arange(CLASSES), 200)
    fake = gan.sample(generator, state.g_params, jax.random.key(5), codes, noise_dim=NOISE)
    _, q, _ = gan.Discriminator(num_classes=CLASSES, hidden=64).apply(
        {'params': state.d_params}, fake)
    return float(gan.mutual_information_bound(q, codes, jnp.full(CLASSES, 0.25)))
  assert bound(with_mi) > bound(without) and bound(with_mi) > 0.9 * math.log(4)
  assert float(metrics_mi['mi_bound']) <= math.log(4) + 1e-6


def test_training_is_deterministic_and_resumes_exactly():
  straight, _, _ = _train(info_weight=1.0, steps=40, seed=3)
  again, _, _ = _train(info_weight=1.0, steps=40, seed=3)
  def host(state):  # what a checkpoint holds: plain arrays, the key as its data
    return jax.device_get(state._replace(rng=jax.random.key_data(state.rng)))
  def assert_equal(a, b):
    jax.tree_util.tree_map(np.testing.assert_array_equal, host(a), host(b))
  assert_equal(straight, again)
  # Stopped at 20, the state taken to the host and back, then 20 more.
  half = host(_train(info_weight=1.0, steps=20, seed=3)[0])
  half = jax.device_put(half._replace(rng=jax.random.wrap_key_data(half.rng)))
  resumed, _, _ = _train(info_weight=1.0, steps=20, seed=3, state=half, start=20)
  assert_equal(straight, resumed)
  assert int(resumed.step) == 40


def test_a_condition_is_generated_from_and_recovered():
  # The condition carries the class: t = one-hot(class) + noise.
  z, labels = _toy()
  t = (np.eye(CLASSES)[labels] + 0.1 * np.random.default_rng(0).standard_normal(
      (len(z), CLASSES))).astype(np.float32)
  generator = gan.Generator(dim=2, num_classes=CLASSES, hidden=32)
  discriminator = gan.Discriminator(num_classes=CLASSES, condition_dim=CLASSES, hidden=32)
  tx = optax.adam(2e-3, b1=0.5)
  state = gan.init_state(jax.random.key(0), generator, discriminator, tx, tx,
                         noise_dim=NOISE, condition_dim=CLASSES)
  step = gan.make_train_step(generator=generator, discriminator=discriminator, g_tx=tx,
                             d_tx=tx, noise_dim=NOISE, prior=np.full(CLASSES, 0.25))
  for i in range(5):
    state, metrics = step(state, z[i * 64:(i + 1) * 64], labels[i * 64:(i + 1) * 64],
                          t[i * 64:(i + 1) * 64])
  assert int(state.step) == 5 and np.isfinite(float(metrics['g_loss']))
  fake = gan.sample(generator, state.g_params, jax.random.key(0), jnp.arange(4),
                    noise_dim=NOISE, condition=jnp.asarray(t[:4]))
  assert fake.shape == (4, 2)
