"""A trained run scored on a whole labelled corpus: the out-of-domain check.

  python -m jaxser.score --workdir=workdir/demo --config=demo --config.demo_recipe=ood
  jaxser score --workdir=/tmp/ser --config=crema_d.py --name=crema_d

The run's selected checkpoint (best dev UA), its feature parameters, its
training split's standardiser and its classes are applied to every
utterance of the corpus `--config` names (its corpus fields only: `corpus`,
`corpus_root`, `demo_*`, `cache_dir`, `strict_data`; utterances of classes
the run does not know are left out by its class map, and said). Reports UA,
WA, macro-F1, per-class recall, the confusion and how often each class was
predicted, and writes `<workdir>/score_<name>.json`. A corpus the run was
trained or selected on is no out-of-domain check: use one it never saw
(the demo's 'ood' recipe, or another corpus).
"""

import os

from absl import flags
from absl import logging
import ml_collections
import numpy as np

from jaxser import cli
from jaxser import config_lib
from jaxser import evaluate
from jaxser import fileio
from jaxser import input_pipeline
from jaxser import parallel
from jaxser import prepare
from jaxser import provenance
from jaxser.data import cache as cache_lib
from jaxser.errors import ConfigError

__all__ = ['CORPUS_FIELDS', 'define_flags', 'main', 'score']

# What `--config` may set; everything else is the run's own.
CORPUS_FIELDS = ('corpus', 'corpus_root', 'demo_utterances', 'demo_seed', 'demo_recipe',
                 'cache_dir', 'strict_data')


def define_flags():
  """The command's flags (defined only when run as a program)."""
  flags.DEFINE_string('workdir', None, 'A trained workdir.')
  flags.DEFINE_string('name', None, 'The score\'s name (default: the corpus, and the '
                      'demo recipe): <workdir>/score_<name>.json.')
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file('config', None, 'A config naming the corpus to score on.')


def score(workdir: str, corpus_config: ml_collections.ConfigDict,
          name: str | None = None) -> dict:
  """Scores the run in `workdir` on every utterance of `corpus_config`'s corpus.

  Returns:
    The results also written to `<workdir>/score_<name>.json`.

  Raises:
    JaxserError: no checkpoint in `workdir`; an unreadable corpus.
  """
  started = provenance.now()
  record, state = evaluate.restore_selected(workdir)
  config = record.config_dict()
  trained_on = {f: config.get(f) for f in CORPUS_FIELDS if f != 'cache_dir'}
  for field in CORPUS_FIELDS:
    if field in corpus_config:
      config[field] = corpus_config[field]
  if trained_on == {f: config.get(f) for f in trained_on}:
    logging.warning('%s was trained on this corpus: the score includes its training '
                    'and dev utterances, and is no out-of-domain check', workdir)
  config.cache_dir = config_lib.cache_dir(config, workdir)
  name = name or (f'{config.corpus}_{config.demo_recipe}' if config.corpus == 'demo'
                  else config.corpus)
  utterances, labels, label_map = prepare.load_corpus(config)
  if tuple(label_map.classes) != tuple(record.classes):
    raise ConfigError(f'the corpus\' classes {label_map.classes} are not the run\'s '
                      f'{record.classes}')
  feats = cache_lib.FeatureCache.build(utterances, record.features, config.cache_dir,
                                       strict=config.strict_data)
  labels = label_map.indices(feats.utterances)
  examples = input_pipeline.Examples(feats, labels, np.arange(len(labels)),
                                     record.standardizer)
  mesh = parallel.make_mesh()
  metrics, out = evaluate.evaluate(
      evaluate.make_eval_step(mesh), parallel.replicate(state, mesh), examples,
      batch_size=config.eval_batch_size, buckets=config.buckets,
      num_classes=len(record.classes), mesh=mesh)
  predicted = np.bincount(out['logits'].argmax(-1), minlength=len(record.classes))
  results = {'name': name, 'corpus': config.corpus, 'utterances': len(labels),
             'classes': list(record.classes), **metrics,
             'predicted_counts': predicted.astype(int).tolist(),
             'true_counts': np.bincount(labels, minlength=len(record.classes)).tolist(),
             'selected_step': record.step,
             'provenance': provenance.describe(config, started)}
  if config.corpus == 'demo':
    results['demo_recipe'] = config.demo_recipe
  fileio.write_json(os.path.join(workdir, f'score_{name}.json'), results)
  logging.info('score %s: UA %.4f WA %.4f over %d utterances', name, metrics['ua'],
               metrics['wa'], len(labels))
  return results


def report(results: dict) -> str:
  """The results as a few lines of text."""
  classes = results['classes']
  lines = [f'{results["name"]}: {results["utterances"]} utterances; UA '
           f'{100 * results["ua"]:.2f} WA {100 * results["wa"]:.2f} macro-F1 '
           f'{100 * results["f1"]:.2f}',
           'recall    ' + '  '.join(f'{c} {100 * r:.1f}' for c, r in
                                   zip(classes, results['recall'])),
           'predicted ' + '  '.join(f'{c} {n}' for c, n in
                                   zip(classes, results['predicted_counts'])),
           'confusion (rows true, columns predicted): ' + ' | '.join(
               ' '.join(str(n) for n in row) for row in results['confusion'])]
  return '\n'.join(lines)


@cli.exits_on_error
def main(argv):
  if len(argv) > 1:
    raise ConfigError(f'unexpected arguments: {argv[1:]}')
  if not flags.FLAGS.workdir or flags.FLAGS.config is None:
    raise ConfigError('--workdir (a trained run) and --config (the corpus) are required')
  print(report(score(flags.FLAGS.workdir, flags.FLAGS.config, flags.FLAGS.name)))


if __name__ == '__main__':
  cli.run(main, define_flags)
