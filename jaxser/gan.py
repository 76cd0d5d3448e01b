"""An MI-regularised conditional GAN over embeddings, as pure functions.

After Ahn et al. (2025, "Improving Speech Emotion Recognition with Mutual
Information Regularized Generative Model"): a generator makes emotion-
conditioned vectors in the space that feeds the last classification layer,
and a variational bound on the mutual information between the conditioning
code and the generated vector (InfoGAN, Chen et al. 2016) is both a training
regulariser and a measure of the generated data's quality. Only the paper's
abstract could be read; the layers, losses and schedule here are this
project's adaptation (docs/method.md, "Generative augmentation").

In the style of `center_loss`, no training loop is inside:

- `Generator` `G(noise, code[, condition]) -> z_hat` and `Discriminator`
  (a shared trunk with a real/fake head, an auxiliary head `Q(code | z)`
  and, with a condition, a Gaussian head for it): Flax Linen modules.
- Per-example losses: `discriminator_loss`, `generator_loss` (the
  non-saturating GAN losses), `code_cross_entropy` (the InfoGAN term, and
  Q's loss on real labelled vectors), `condition_nll`.
- `mutual_information_bound(q_logits, codes, prior)`: `H(c) - CE` in nats,
  at most `H(c)`.
- `GANState` (both networks' parameters and optax states, the step and an
  RNG key), `init_state` and `train_step`, which `make_train_step` jits
  with the state donated. Each step draws from `fold_in(state.rng, step)`,
  so a resumed run draws the same numbers as an uninterrupted one.
"""

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

__all__ = ['Discriminator', 'GANState', 'Generator', 'code_cross_entropy',
           'condition_nll', 'discriminator_loss', 'entropy', 'generator_loss',
           'init_state', 'make_train_step', 'mutual_information_bound', 'sample',
           'train_step']


class Generator(nn.Module):
  """`z_hat = G(noise, code[, condition])`: an MLP on [noise, one-hot code, t]."""
  dim: int  # the embedding size it generates
  num_classes: int
  hidden: int = 128

  @nn.compact
  def __call__(self, noise, codes, condition=None):
    parts = [noise, jax.nn.one_hot(codes, self.num_classes)]
    if condition is not None:
      parts.append(condition)
    x = jnp.concatenate(parts, axis=-1)
    for _ in range(2):
      x = nn.leaky_relu(nn.Dense(self.hidden)(x), 0.2)
    return nn.Dense(self.dim)(x)


class Discriminator(nn.Module):
  """Real/fake logit, `Q(code | z)` logits and the condition's mean, one trunk."""
  num_classes: int
  condition_dim: int = 0  # 0: no condition head
  hidden: int = 128

  @nn.compact
  def __call__(self, z):
    x = z
    for _ in range(2):
      x = nn.leaky_relu(nn.Dense(self.hidden)(x), 0.2)
    real = nn.Dense(1, name='real_fake')(x)[..., 0]
    q_logits = nn.Dense(self.num_classes, name='q_code')(x)
    t_mean = (nn.Dense(self.condition_dim, name='q_condition')(x)
              if self.condition_dim else None)
    return real, q_logits, t_mean


# --------------------------------------------------------------------------
# Losses, per example.


def discriminator_loss(real_logits, fake_logits):
  """`-log D(real) - log(1 - D(fake))`, per example pair: `[batch]`."""
  return jax.nn.softplus(-real_logits) + jax.nn.softplus(fake_logits)


def generator_loss(fake_logits):
  """The non-saturating generator loss `-log D(G(.))`: `[batch]`."""
  return jax.nn.softplus(-fake_logits)


def code_cross_entropy(q_logits, codes):
  """`-log Q(code | z)`, per example: `[batch]`."""
  return optax.softmax_cross_entropy_with_integer_labels(q_logits, codes)


def condition_nll(t_mean, condition):
  """`-log N(t; mean, I)` less its constant, per example: `[batch]`."""
  return 0.5 * jnp.sum((condition - t_mean) ** 2, axis=-1)


def entropy(prior) -> jax.Array:
  """`H(c)` of a categorical prior, in nats."""
  prior = jnp.asarray(prior, jnp.float32)
  return -jnp.sum(jnp.where(prior > 0, prior * jnp.log(jnp.where(prior > 0, prior, 1)), 0))


def mutual_information_bound(q_logits, codes, prior) -> jax.Array:
  """InfoGAN's lower bound on `I(c; G(noise, c))`: `H(c) - E[-log Q(c | G)]`.

  Args:
    q_logits: `[batch, C]` the auxiliary head on generated vectors.
    codes: `[batch]` the codes they were generated from, drawn from `prior`.
    prior: `[C]` the codes' distribution.

  Returns:
    Nats, at most `H(prior)` (reached by a Q that is always certain and
    right; 0 for a Q that returns the prior whatever it sees).
  """
  return entropy(prior) - jnp.mean(code_cross_entropy(q_logits, codes))


# --------------------------------------------------------------------------
# The training state and step.


class GANState(NamedTuple):
  """Everything a GAN training carries from step to step."""
  step: jax.Array
  g_params: Any
  d_params: Any
  g_opt_state: Any
  d_opt_state: Any
  rng: jax.Array  # constant: each step folds its number in


def init_state(key, generator: Generator, discriminator: Discriminator,
               g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
               *, noise_dim: int, condition_dim: int = 0) -> GANState:
  """Fresh parameters and optimiser states; `key` seeds them and every step."""
  init_key, rng = jax.random.split(key)
  g_key, d_key = jax.random.split(init_key)
  condition = jnp.zeros((1, condition_dim)) if condition_dim else None
  g_params = generator.init(g_key, jnp.zeros((1, noise_dim)), jnp.zeros((1,), jnp.int32),
                            condition)['params']
  d_params = discriminator.init(d_key, jnp.zeros((1, generator.dim)))['params']
  return GANState(step=jnp.zeros((), jnp.int32), g_params=g_params, d_params=d_params,
                  g_opt_state=g_tx.init(g_params), d_opt_state=d_tx.init(d_params),
                  rng=rng)


def sample(generator: Generator, g_params, key, codes, *, noise_dim: int,
           condition=None):
  """Generated vectors `[n, dim]` for the `codes [n]` (and condition rows)."""
  noise = jax.random.normal(key, (codes.shape[0], noise_dim))
  return generator.apply({'params': g_params}, noise, codes, condition)


def train_step(state: GANState, real_z, real_labels, real_condition=None, *,
               generator: Generator, discriminator: Discriminator,
               g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
               noise_dim: int, prior, info_weight: float = 1.0,
               real_code_weight: float = 1.0):
  """One discriminator update, then one generator update.

  The fake codes are drawn from `prior` (without a condition), or are the
  labels of real rows drawn at random with their condition rows, so the
  generator sees the (code, condition) pairs of the data. The discriminator
  minimises the GAN loss, `real_code_weight` times Q's cross-entropy on the
  real labelled vectors (so a code means its emotion) and `info_weight`
  times the InfoGAN term on the fakes; the generator the non-saturating
  loss plus `info_weight` times the InfoGAN term (and the condition's
  Gaussian term). `info_weight=0` is a plain conditional GAN.

  Args:
    state: the `GANState`; `real_z [batch, dim]`, `real_labels [batch]` and
      `real_condition [batch, t]` (or None): a batch of real vectors.
    generator, discriminator, g_tx, d_tx: the networks and optimisers.
    noise_dim: the noise size; prior: `[C]` the fake codes' distribution
      (without a condition); info_weight, real_code_weight: the weights.

  Returns:
    `(state, metrics)`: 'd_loss', 'g_loss', 'mi_bound' (nats, on this
    step's fakes) and 'real_code_accuracy' (Q on the real batch).
  """
  prior = jnp.asarray(prior, jnp.float32)
  codes, condition, noise = _draw(state, real_labels, real_condition, prior, noise_dim)
  batch = real_z.shape[0]

  def fake_of(g_params):
    return generator.apply({'params': g_params}, noise, codes, condition)

  def d_loss_fn(d_params):
    fake = jax.lax.stop_gradient(fake_of(state.g_params))
    real_logit, real_q, _ = discriminator.apply({'params': d_params}, real_z)
    fake_logit, fake_q, fake_t = discriminator.apply({'params': d_params}, fake)
    loss = (jnp.mean(discriminator_loss(real_logit, fake_logit))
            + real_code_weight * jnp.mean(code_cross_entropy(real_q, real_labels))
            + info_weight * jnp.mean(_info_terms(fake_q, fake_t, codes, condition)))
    return loss, jnp.mean(jnp.argmax(real_q, -1) == real_labels)

  d_loss, real_accuracy, d_params, d_opt_state = _update(
      d_loss_fn, state.d_params, state.d_opt_state, d_tx)

  def g_loss_fn(g_params):
    fake_logit, fake_q, fake_t = discriminator.apply({'params': d_params}, fake_of(g_params))
    loss = (jnp.mean(generator_loss(fake_logit))
            + info_weight * jnp.mean(_info_terms(fake_q, fake_t, codes, condition)))
    return loss, fake_q

  g_loss, fake_q, g_params, g_opt_state = _update(
      g_loss_fn, state.g_params, state.g_opt_state, g_tx)
  metrics = {'d_loss': d_loss, 'g_loss': g_loss,
             'mi_bound': mutual_information_bound(fake_q, codes, prior if condition is None
                                                  else jnp.bincount(codes, length=prior.shape[0]) / batch),
             'real_code_accuracy': real_accuracy}
  return state._replace(step=state.step + 1, g_params=g_params, d_params=d_params,
                        g_opt_state=g_opt_state, d_opt_state=d_opt_state), metrics


def _info_terms(q_logits, t_mean, codes, condition):
  """The InfoGAN term per example: the code's and, with one, the condition's."""
  terms = code_cross_entropy(q_logits, codes)
  return terms if condition is None else terms + condition_nll(t_mean, condition)


def _update(loss_fn, params, opt_state, tx):
  """`(loss, aux, params, opt_state)` after one step of `tx` on `loss_fn`."""
  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return loss, aux, optax.apply_updates(params, updates), opt_state


def _draw(state: GANState, real_labels, real_condition, prior, noise_dim: int):
  """The step's fake codes, condition rows and noise, from `fold_in(rng, step)`."""
  code_key, noise_key, pick_key = jax.random.split(
      jax.random.fold_in(state.rng, state.step), 3)
  batch = real_labels.shape[0]
  if real_condition is None:
    codes = jax.random.categorical(code_key, jnp.log(prior), shape=(batch,))
    condition = None
  else:
    picked = jax.random.randint(pick_key, (batch,), 0, batch)
    codes, condition = real_labels[picked], real_condition[picked]
  return codes, condition, jax.random.normal(noise_key, (batch, noise_dim))


def make_train_step(**options):
  """`train_step` with its keyword options bound, jitted, the state donated."""
  return jax.jit(functools.partial(train_step, **options), donate_argnums=0)
