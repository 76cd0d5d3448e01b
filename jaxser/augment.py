"""Generative augmentation of a trained run's embeddings, against baselines.

  python -m jaxser.augment --workdir=/tmp/ser [--config=demo:quick --config.augment.ratio=2]
  jaxser augment --workdir=/tmp/ser

On a trained run (its selected checkpoint, best dev UA), in the space that
feeds the last layer (the embeddings z, FC1's output):

1. the embeddings of the training split (only: dev selects, test reports);
2. the MI-regularised conditional GAN (`jaxser.gan`) trained on them, and
   the same GAN without the MI term;
3. for each variant of `config.augment.variants`, FC2 trained again from
   the run's own FC2, the CRNN and FC1 frozen, for the same number of
   updates, on the real vectors plus `ratio` times as many synthetic ones,
   the same number for every class, selected by dev UA as training selects:
   `none` (real vectors alone), `gan_mi`, `gan`, `noise` (real vectors plus
   Gaussian noise) and `mixup` (convex mixtures of real pairs, soft labels);
4. test UA, WA and macro-F1 before (the run's FC2) and after each, the
   generators' MI bound (nats; `ln C` at most) and the accuracy on their
   vectors of the run's own FC2, fitted on real vectors only.

With `config.augment.condition` (a `.npz` of one vector per utterance id,
such as text embeddings made elsewhere) the GANs are conditioned on it too.

Writes `<workdir>/augment/ratio<r>/results.json`, each generator's parameters
(`generator_<variant>.msgpack`) and `real_and_generated.png` (real and
generated vectors of each class on the same PCA axes). Settings are the
`config.augment` fields: the `--config` given, else the run's own.
"""

import json
import os

from absl import flags
from absl import logging
import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxser import checkpoint as checkpoint_lib
from jaxser import cli
from jaxser import evaluate
from jaxser import fileio
from jaxser import gan
from jaxser import losses
from jaxser import metrics as metrics_lib
from jaxser import provenance
from jaxser.configs import default as default_config
from jaxser.errors import ConfigError
from jaxser.errors import JaxserError

__all__ = ['GAN_VARIANTS', 'VARIANTS', 'augment_config', 'define_flags', 'fit_head', 'main',
           'output_dir', 'run', 'source', 'synthetic', 'train_generator']

VARIANTS = ('none', 'gan_mi', 'gan', 'noise', 'mixup')
GAN_VARIANTS = {'gan_mi': True, 'gan': False}  # variant -> with the MI term


def define_flags():
  """The command's flags (defined only when run as a program)."""
  flags.DEFINE_string('workdir', None, 'A trained workdir.')
  flags.DEFINE_string('crossval', None, 'A crossval workdir: augment each of its '
                      'finished runs and summarise them (instead of --workdir).')
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file('config', None, 'A config whose augment fields '
                                  'to use (default: the run\'s own).')


def _scores(logits, labels, num_classes: int) -> dict:
  cm = metrics_lib.confusion_matrix(labels, jnp.argmax(logits, -1), num_classes)
  return {'ua': float(metrics_lib.unweighted_accuracy(cm)),
          'wa': float(metrics_lib.weighted_accuracy(cm)),
          'f1': float(metrics_lib.macro_f1(cm)),
          'confusion': np.asarray(cm).tolist()}


def train_generator(z, labels, num_classes: int, aug, *, with_mi: bool, condition=None):
  """A GAN trained on `(z, labels[, condition])`: `(generator, state, last metrics)`."""
  condition_dim = 0 if condition is None else condition.shape[1]
  generator = gan.Generator(dim=z.shape[1], num_classes=num_classes, hidden=aug.hidden)
  discriminator = gan.Discriminator(num_classes=num_classes, hidden=aug.hidden,
                                    condition_dim=condition_dim)
  tx = optax.adam(aug.learning_rate, b1=0.5)
  state = gan.init_state(jax.random.key(aug.seed), generator, discriminator, tx, tx,
                         noise_dim=aug.noise_dim, condition_dim=condition_dim)
  step = gan.make_train_step(generator=generator, discriminator=discriminator,
                             g_tx=tx, d_tx=tx, noise_dim=aug.noise_dim,
                             prior=np.full(num_classes, 1.0 / num_classes),
                             info_weight=aug.info_weight if with_mi else 0.0)
  rng = np.random.default_rng(aug.seed)
  z, labels = jnp.asarray(z), jnp.asarray(labels)
  metrics = {}
  for _ in range(aug.gan_steps):
    rows = rng.integers(0, len(z), aug.gan_batch_size)
    state, metrics = step(state, z[rows], labels[rows],
                          None if condition is None else condition[rows])
  return generator, state, {k: float(v) for k, v in metrics.items()}


def synthetic(variant: str, z, labels, num_classes: int, aug, generator=None,
              gan_state=None, condition=None):
  """`ratio * len(z)` synthetic vectors, as many per class: `(z, targets)`.

  Targets are class probabilities `[n, C]` (one-hot but for mixup). With a
  `condition` (`[n_real, t]`), each generated vector takes the condition
  of a real training vector of its class.
  """
  per_class = int(round(aug.ratio * len(z) / num_classes))
  codes = np.repeat(np.arange(num_classes), per_class)
  onehot = np.eye(num_classes, dtype=np.float32)
  rng = np.random.default_rng(aug.seed + 1)
  if variant == 'none' or per_class == 0:
    return np.zeros((0, z.shape[1]), np.float32), np.zeros((0, num_classes), np.float32)
  picked = _rows_of(labels, codes, rng)
  if variant in GAN_VARIANTS:
    fake = gan.sample(generator, gan_state.g_params, jax.random.key(aug.seed + 1),
                      jnp.asarray(codes), noise_dim=aug.noise_dim,
                      condition=None if condition is None else condition[picked])
    return np.asarray(fake, np.float32), onehot[codes]
  if variant == 'noise':
    noise = aug.noise_sigma * z.std(axis=0) * rng.standard_normal((len(codes), z.shape[1]))
    return (z[picked] + noise).astype(np.float32), onehot[codes]
  if variant == 'mixup':
    other = rng.integers(0, len(z), len(codes))
    lam = rng.beta(aug.mixup_alpha, aug.mixup_alpha, len(codes))[:, None]
    mixed = lam * z[picked] + (1 - lam) * z[other]
    return mixed.astype(np.float32), (lam * onehot[codes] + (1 - lam) * onehot[labels[other]]
                                      ).astype(np.float32)
  raise ConfigError(f'config.augment.variants: unknown variant {variant!r} '
                    f'(known: {", ".join(VARIANTS)})')


def _rows_of(labels, codes, rng) -> np.ndarray:
  """For each code, a random real row of that class."""
  return np.array([rng.choice(np.flatnonzero(labels == c)) for c in codes], np.int64)


def fit_head(fc2: dict, z, targets, dev_z, dev_labels, aug) -> tuple[dict, dict]:
  """FC2 trained again from `fc2` on `(z, targets)`, selected by dev UA.

  Class-weighted cross-entropy with soft targets (the weights of the
  targets' classes, `losses.class_weights`), Adam, `aug.head_steps` updates
  of `aug.head_batch_size`; dev UA every `aug.eval_every` updates and at the
  end, a strictly better one replacing the selection.

  Returns:
    `(selected fc2 params, {'dev_ua', 'step'})`.
  """
  num_classes = targets.shape[1]
  weights = np.asarray(losses.class_weights(np.bincount(
      targets.argmax(1), minlength=num_classes)))
  tx = optax.adam(aug.head_learning_rate)

  @jax.jit
  def step(params, opt_state, x, t):
    def loss_fn(p):
      ce = optax.softmax_cross_entropy(x @ p['kernel'] + p['bias'], t)
      w = t @ weights
      return jnp.sum(w * ce) / jnp.sum(w)
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  params = {k: jnp.asarray(v) for k, v in fc2.items()}
  opt_state = tx.init(params)
  rng = np.random.default_rng(aug.seed + 2)
  best = {'dev_ua': -1.0, 'step': 0}
  selected = params
  for i in range(1, aug.head_steps + 1):
    rows = rng.integers(0, len(z), aug.head_batch_size)
    params, opt_state = step(params, opt_state, z[rows], targets[rows])
    if i % aug.eval_every == 0 or i == aug.head_steps:
      ua = _scores(dev_z @ params['kernel'] + params['bias'], dev_labels, num_classes)['ua']
      if ua > best['dev_ua']:
        best, selected = {'dev_ua': ua, 'step': i}, params
  return jax.device_get(selected), best


def augment_config(workdir: str, record, config) -> ml_collections.ConfigDict:
  """The augment fields: `config`'s, else the run's, else the defaults."""
  if config is not None and 'augment' in config:
    return config.augment
  own = None if record is None else record.config_dict()
  if own is not None and 'augment' in own:
    return own.augment
  return default_config.get_config().augment


def run(workdir: str, config: ml_collections.ConfigDict | None = None) -> dict:
  """Augments a trained run's last layer; writes and returns the results.

  Raises:
    JaxserError: no selected checkpoint in `workdir` (named), bad settings.
  """
  checkpoints = checkpoint_lib.Checkpoints(workdir, read_only=True)
  try:
    selected = checkpoints.latest_step(checkpoint_lib.BEST)
  finally:
    checkpoints.close()
  if selected is None:
    raise JaxserError(f'{workdir}: no selected checkpoint (best/): augmentation '
                      'needs a trained run that evaluated dev at least once')
  started = provenance.now()
  record, state = evaluate.restore_selected(workdir)
  aug = augment_config(workdir, record, config)
  variants = [v.strip() for v in aug.variants.split(',') if v.strip()]
  unknown = sorted(set(variants) - set(VARIANTS))
  if unknown:
    raise ConfigError(f'config.augment.variants: unknown {unknown} (known: {", ".join(VARIANTS)})')
  emb = evaluate.run_embeddings(workdir, ('train', 'dev', 'test'))
  if aug.get('condition'):
    emb['train']['condition'] = _conditions(aug.condition, emb['train']['ids'])
  train, test = emb['train'], emb['test']
  num_classes = len(record.classes)
  fc2 = jax.device_get(state.params['fc2'])
  results = {'classes': list(record.classes), 'settings': aug.to_dict(),
             'sizes': {s: int(len(emb[s]['z'])) for s in emb},
             'before': _scores(_logits(fc2, test['z']), test['labels'], num_classes),
             'variants': {}, 'generators': {}}
  out_dir = output_dir(workdir, aug)
  os.makedirs(out_dir, exist_ok=True)
  results['source'] = source(workdir)
  generated = {}
  for variant in variants:
    results['variants'][variant], generated[variant] = _variant(
        variant, emb, fc2, num_classes, aug, results['generators'], out_dir)
    logging.info('augment %s: test UA %.4f (before %.4f)', variant,
                 results['variants'][variant]['ua'], results['before']['ua'])
  generated = {k: v for k, v in generated.items() if k in GAN_VARIANTS}
  if generated:
    from jaxser import plots  # pylint: disable=g-import-not-at-top (matplotlib is slow to import)
    results['figure'] = plots.real_and_generated(
        train['z'], train['labels'], generated, record.classes,
        os.path.join(out_dir, 'real_and_generated.png'),
        title=f'{results["source"]["fold"]}, seed {record.config["seed"]}: training '
              'embeddings and generated vectors, on the real vectors\' PCA axes')
  results['provenance'] = provenance.describe(record.config_dict(), started)
  fileio.write_json(os.path.join(out_dir, 'results.json'), results)
  return results


def _conditions(path: str, ids) -> np.ndarray:
  """`[n, t]` condition rows of the utterances `ids`, from a `.npz` keyed by id.

  Raises:
    JaxserError: the file cannot be read, lacks an utterance (naming a few),
      or holds vectors of different sizes or non-finite values.
  """
  try:
    with np.load(path) as saved:
      missing = [str(i) for i in ids if str(i) not in saved.files]
      if missing:
        raise JaxserError(f'config.augment.condition={path}: no condition for {len(missing)} '
                          f'training utterances, e.g. {", ".join(missing[:3])}')
      rows = [np.asarray(saved[str(i)], np.float32).reshape(-1) for i in ids]
  except (OSError, ValueError) as e:
    raise JaxserError(f'config.augment.condition={path}: unreadable ({e})') from e
  if len({len(r) for r in rows}) != 1 or not all(np.all(np.isfinite(r)) for r in rows):
    raise JaxserError(f'config.augment.condition={path}: the vectors must all have one '
                      'size and be finite')
  return np.stack(rows)


def output_dir(workdir: str, aug) -> str:
  """`<workdir>/augment/ratio<r>`: a ratio's outputs."""
  return os.path.join(workdir, 'augment', f'ratio{aug.ratio:g}')


def source(workdir: str) -> dict:
  """What the results come from: the run's identity, fold and selected step."""
  with open(os.path.join(workdir, 'results.json')) as f:
    trained = json.load(f)
  return {key: trained.get(key) for key in ('identity', 'fold', 'seed', 'selected_step')}


def _logits(fc2: dict, z):
  return z @ fc2['kernel'] + fc2['bias']


def _variant(variant: str, emb: dict, fc2: dict, num_classes: int, aug,
             generators: dict, out_dir: str):
  """One variant: its synthetic vectors, FC2 fitted again, the test scores.

  A GAN variant's generator is trained, judged (into `generators`) and
  saved first. Returns `(its results, (synthetic z, their classes))`.
  """
  train, dev, test = emb['train'], emb['dev'], emb['test']
  generator = gan_state = None
  if variant in GAN_VARIANTS:
    logging.info('augment: training the GAN of %s (%d steps)', variant, aug.gan_steps)
    generator, gan_state, last = train_generator(
        train['z'], train['labels'], num_classes, aug, with_mi=GAN_VARIANTS[variant],
        condition=train.get('condition'))
    generators[variant] = _judge(generator, gan_state, fc2, num_classes, aug, last,
                                 train)
    fileio.atomic_write(os.path.join(out_dir, f'generator_{variant}.msgpack'),
                        flax.serialization.to_bytes(jax.device_get(gan_state.g_params)))
  syn_z, syn_t = synthetic(variant, train['z'], train['labels'], num_classes, aug,
                           generator, gan_state, train.get('condition'))
  z = np.concatenate([train['z'], syn_z])
  targets = np.concatenate([np.eye(num_classes, dtype=np.float32)[train['labels']], syn_t])
  head, best = fit_head(fc2, z, targets, dev['z'], dev['labels'], aug)
  scores = {**_scores(_logits(head, test['z']), test['labels'], num_classes), **best,
            'synthetic': int(len(syn_z))}
  return scores, (syn_z, syn_t.argmax(1))


def _judge(generator, gan_state, fc2, num_classes: int, aug, last: dict,
           train: dict) -> dict:
  """A generator's MI bound (its own Q) and the run's FC2 accuracy on its vectors."""
  codes = jnp.repeat(jnp.arange(num_classes), 250)
  condition = train.get('condition')
  if condition is not None:  # a real vector's condition of each code's class
    condition = condition[_rows_of(train['labels'], np.asarray(codes),
                                   np.random.default_rng(aug.seed + 7))]
  fake = gan.sample(generator, gan_state.g_params, jax.random.key(aug.seed + 7), codes,
                    noise_dim=aug.noise_dim, condition=condition)
  discriminator = gan.Discriminator(num_classes=num_classes, hidden=aug.hidden,
                                    condition_dim=0 if condition is None
                                    else condition.shape[1])
  _, q_logits, _ = discriminator.apply({'params': gan_state.d_params}, fake)
  predicted = np.asarray(jnp.argmax(fake @ fc2['kernel'] + fc2['bias'], -1))
  per_class = [float(np.mean(predicted[np.asarray(codes) == c] == c))
               for c in range(num_classes)]
  return {'mi_bound': float(gan.mutual_information_bound(
              q_logits, codes, jnp.full(num_classes, 1.0 / num_classes))),
          'mi_bound_max': float(np.log(num_classes)),
          'real_classifier_accuracy': float(np.mean(per_class)),
          'real_classifier_accuracy_per_class': per_class, 'last_step': last}


@cli.exits_on_error
def main(argv):
  if len(argv) > 1:
    raise ConfigError(f'unexpected arguments: {argv[1:]}')
  if flags.FLAGS.crossval:
    from jaxser import augment_study  # pylint: disable=g-import-not-at-top (it imports this)
    print(augment_study.markdown(augment_study.run_all(flags.FLAGS.crossval,
                                                       flags.FLAGS.config)))
    return
  if not flags.FLAGS.workdir:
    raise ConfigError('--workdir (a run) or --crossval (a crossval workdir) is required')
  results = run(flags.FLAGS.workdir, flags.FLAGS.config)
  before = results['before']
  print(f'before: test UA {100 * before["ua"]:.2f} WA {100 * before["wa"]:.2f} '
        f'F1 {100 * before["f1"]:.2f}')
  for name, r in results['variants'].items():
    print(f'{name:8s} test UA {100 * r["ua"]:.2f} WA {100 * r["wa"]:.2f} '
          f'F1 {100 * r["f1"]:.2f} ({r["synthetic"]} synthetic vectors)')
  for name, g in results['generators'].items():
    print(f'{name:8s} MI bound {g["mi_bound"]:.3f} of {g["mi_bound_max"]:.3f} nats; '
          f'the run\'s FC2 on its vectors {100 * g["real_classifier_accuracy"]:.1f} %')


if __name__ == '__main__':
  cli.run(main, define_flags)
