"""Runs the README's examples (the centre loss, the GAN) and checks they are its own."""

import pathlib

import numpy as np

# The example exactly as the README shows it.
EXAMPLE = '''\
import jax
import jax.numpy as jnp
import optax

from jaxser import center_loss

NUM_CLASSES, DIM = 3, 2


def model(params, x):
  """A user's own model: returns (logits, embeddings)."""
  z = jnp.tanh(x @ params['w1'] + params['b1'])  # [batch, DIM]
  return z @ params['w2'] + params['b2'], z


def loss_fn(params, center_state, x, y, lam):
  logits, z = model(params, x)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  center = center_loss.loss(z, y, center_state).mean()  # no gradient to centres
  return ce + lam * center, z


optimizer = optax.adam(1e-2)


@jax.jit
def train_step(params, opt_state, center_state, x, y):
  (loss, z), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      params, center_state, x, y, 0.3)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  params = optax.apply_updates(params, updates)
  # After the loss of the step: c_j <- (1 - alpha) c_j + alpha * mean z_j.
  center_state = center_loss.update(center_state, z, y, alpha=0.5)
  return params, opt_state, center_state, loss


k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
params = {'w1': jax.random.normal(k1, (8, DIM)), 'b1': jnp.zeros(DIM),
          'w2': jax.random.normal(k2, (DIM, NUM_CLASSES)),
          'b2': jnp.zeros(NUM_CLASSES)}
opt_state = optimizer.init(params)
center_state = center_loss.init(NUM_CLASSES, DIM)  # centres at zero
y = jax.random.randint(k3, (64,), 0, NUM_CLASSES)
x = jax.random.normal(k4, (64, 8)) + 2.0 * jax.nn.one_hot(y, 8)
losses = []
for _ in range(100):
  params, opt_state, center_state, loss = train_step(
      params, opt_state, center_state, x, y)
  losses.append(float(loss))
print(f'loss {losses[0]:.3f} -> {losses[-1]:.3f}')
print('centres', center_state.centers)
'''

_ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_example_trains_and_moves_the_centres():
  namespace = {}
  # pylint: disable-next=exec-used
  exec(compile(EXAMPLE, 'readme_example', 'exec'), namespace)
  losses = namespace['losses']
  assert losses[-1] < 0.7 * losses[0]
  centers = np.asarray(namespace['center_state'].centers)
  assert centers.shape == (3, 2)
  # Every centre left zero, where init put it.
  assert np.linalg.norm(centers, axis=1).min() > 0.1
  # Distinct classes end at distinct centres.
  gaps = np.linalg.norm(centers[:, None] - centers[None], axis=-1)
  assert gaps[np.triu_indices(3, 1)].min() > 0.1


def test_docs_show_this_example():
  assert EXAMPLE in (_ROOT / 'README.md').read_text(), (
      'the example in README.md differs from tests/readme_example_test.py')


GAN_EXAMPLE = '''\
import jax
import numpy as np
import optax

from jaxser import gan

rng = np.random.default_rng(0)
labels = rng.integers(0, 4, 512)  # your classes...
z = (np.eye(4, 8)[labels] * 3 + rng.normal(size=(512, 8))).astype(np.float32)  # ...and embeddings

generator = gan.Generator(dim=8, num_classes=4, hidden=64)
discriminator = gan.Discriminator(num_classes=4, hidden=64)
tx = optax.adam(2e-3, b1=0.5)
state = gan.init_state(jax.random.key(0), generator, discriminator, tx, tx, noise_dim=8)
step = gan.make_train_step(generator=generator, discriminator=discriminator, g_tx=tx,
                           d_tx=tx, noise_dim=8, prior=np.full(4, 0.25), info_weight=1.0)
for i in range(300):
  rows = rng.integers(0, len(z), 64)
  state, metrics = step(state, z[rows], labels[rows])  # the state is donated
print(f"MI bound {float(metrics['mi_bound']):.3f} nats of {np.log(4):.3f}")
fake = gan.sample(generator, state.g_params, jax.random.key(1), np.repeat(np.arange(4), 50),
                  noise_dim=8)  # [200, 8]: 50 vectors of each class, to train on
'''


def test_gan_example_learns_codes_that_mean_their_class(capsys):
  namespace = {}
  # pylint: disable-next=exec-used
  exec(compile(GAN_EXAMPLE, 'readme_gan_example', 'exec'), namespace)
  assert float(namespace['metrics']['mi_bound']) > 0.8 * np.log(4)
  assert namespace['fake'].shape == (200, 8)
  assert capsys.readouterr().out.startswith('MI bound ')
  assert GAN_EXAMPLE in (_ROOT / 'README.md').read_text(), (
      'the GAN example in README.md differs from tests/readme_example_test.py')
