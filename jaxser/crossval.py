"""Runs every fold of a protocol with several seeds and summarises them.

  python -m jaxser.crossval --config=configs/default.py --workdir=/tmp/cv \
      --config.corpus_root=/data/IEMOCAP_full_release --seeds=0,1,2

Each (seed, fold) trains in `<workdir>/seed<s>/fold<k>` with the seed used for
both the initialisation and the protocol's random subsets; finished runs
(those with a results.json) are not redone, unfinished ones resume. Writes
`<workdir>/summary.json` and `<workdir>/summary.md`: UA/WA per fold, mean +-
std, and the averaged row-normalised confusion matrix.
"""

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxser import experiment  # pylint: disable=g-import-not-at-top
from jaxser import report  # pylint: disable=g-import-not-at-top
from jaxser import train  # pylint: disable=g-import-not-at-top
from jaxser.errors import JaxserError  # pylint: disable=g-import-not-at-top



def define_flags():
  """The command's flags (defined only when run as a program)."""
  flags.DEFINE_string('workdir', None, 'Root of the per-fold workdirs.')
  flags.DEFINE_list('seeds', ['0'], 'Seeds (initialisation and subsets).')
  flags.DEFINE_list('folds', None, 'Folds to run (default: all).')
  config_flags.DEFINE_config_file('config', None, 'The experiment config file.')
  flags.mark_flags_as_required(['config', 'workdir'])


def run(config, workdir: str, seeds, folds=None) -> dict:
  """Trains every (seed, fold) not yet finished; returns the summary dict."""
  experiment.validate_config(config)
  results = []
  for seed in seeds:
    fold_config = config.copy_and_resolve_references()
    fold_config.seed = fold_config.split_seed = int(seed)
    # One feature cache for every seed and fold.
    fold_config.cache_dir = config.cache_dir or os.path.join(workdir, 'jaxser_cache')
    fold_ids = folds if folds is not None else range(experiment.num_folds(fold_config))
    for fold in fold_ids:
      fold_config.fold = int(fold)
      fold_dir = os.path.join(workdir, f'seed{seed}', f'fold{fold}')
      done = os.path.join(fold_dir, 'results.json')
      if os.path.exists(done):
        logging.info('seed %s fold %s: finished before, not redone', seed, fold)
        with open(done) as f:
          result = json.load(f)
      else:
        logging.info('seed %s fold %s: training in %s', seed, fold, fold_dir)
        result = train.train_and_evaluate(fold_config, fold_dir)
      results.append({'fold': result['fold'], 'seed': int(seed), 'ua': result['ua'],
                      'wa': result['wa'], 'confusion': result['confusion']})
  summary = report.fold_summary(results, results and _classes(workdir, seeds, folds))
  experiment.write_json(os.path.join(workdir, 'summary.json'), summary)
  with open(os.path.join(workdir, 'summary.md'), 'w') as f:
    f.write(report.markdown_table(summary))
  return summary


def _classes(workdir, seeds, folds):
  first = os.path.join(workdir, f'seed{seeds[0]}', f'fold{(folds or [0])[0]}', 'results.json')
  with open(first) as f:
    return json.load(f)['classes']


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  os.makedirs(FLAGS.workdir, exist_ok=True)
  try:
    summary = run(FLAGS.config, FLAGS.workdir, FLAGS.seeds, FLAGS.folds)
  except JaxserError as e:
    sys.exit(f'jaxser: {e}')
  print(report.markdown_table(summary))


if __name__ == '__main__':
  define_flags()
  app.run(main)
