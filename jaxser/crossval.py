"""Runs every fold of a protocol with several seeds and summarises them.

  python -m jaxser.crossval --config=jaxser/configs/default.py --workdir=/tmp/cv \
      --config.corpus_root=/data/IEMOCAP_full_release --seeds=0,1,2

Each (seed, fold) trains in `<workdir>/seed<s>/fold<k>` with the seed used for
both the initialisation and the protocol's random subsets; finished runs
(those with a results.json) are not redone, unfinished ones resume, and both
only when they were made by the same config on the same corpus content (else
the command is refused, naming what differs; --start_over retrains all). Writes
`<workdir>/summary.json` and `<workdir>/summary.md`: UA/WA per fold, mean +-
std, and the averaged row-normalised confusion matrix.

`--parallel_runs=R` trains up to R unfinished runs side by side as one
compiled program (`jaxser.stacked`), each with its own batches, checkpoints
and results, equal to training them one after the other.
"""

import json
import os

from absl import app
from absl import flags
from absl import logging
import jax

from jaxser import cli
from jaxser import config_lib
from jaxser import prepare
from jaxser import provenance
from jaxser import run_record
from jaxser import workdir as workdir_lib
from jaxser.data import fingerprint
from jaxser import fileio
from jaxser import protocols
from jaxser import report
from jaxser import stacked
from jaxser import train
from jaxser.errors import ConfigError
from jaxser.errors import JaxserError

__all__ = ['default_parallel_runs', 'define_flags', 'main', 'plan_runs', 'run', 'train_runs']



def define_flags():
  """The command's flags (defined only when run as a program)."""
  cli.define_config_flags('Root of the per-fold workdirs.')
  flags.DEFINE_list('seeds', ['0'], 'Seeds (initialisation and subsets).')
  flags.DEFINE_list('folds', None, 'Folds to run (default: all).')
  flags.DEFINE_bool('start_over', False, 'Discard every (seed, fold) run '
                    'found in --workdir and train them all anew.')
  flags.DEFINE_integer('parallel_runs', None, 'Runs trained side by side as one '
                       'program (jax.vmap); default 1 on a CPU, 4 on a GPU or TPU.')
  flags.DEFINE_integer('split_seed', None, 'Deal the protocol\'s random subsets '
                       'once, with this seed, for every seed (the authors\' '
                       'repeats); default: dealt anew with each seed.')


def run(config, workdir: str, seeds, folds=None, *, start_over: bool = False,
        split_seed: int | None = None, parallel_runs: int | None = None) -> dict:
  """Trains every (seed, fold) not yet finished; returns the summary dict.

  Each seed initialises the model and orders the data; the protocol's random
  subsets (the paper's 10-subset dealing, the random split) are dealt with
  the same seed, or, with `split_seed`, once for every seed: the authors
  repeated cross-validation over one division. The summary says which
  (`'split_seed'`: None for dealt with each seed).

  Unfinished runs train up to `parallel_runs` side by side (`train_runs`;
  default `default_parallel_runs()`), with the same results.

  A finished run (one with a results.json) is reused only when its recorded
  identity (`run_record.run_identity`) is this config's for that seed and
  fold, on the same corpus content; otherwise the whole command is refused
  before any training, naming what differs.

  Raises:
    JaxserError: a bad config or corpus; a finished run of another identity
      (IdentityError); what training raises.
  """
  config_lib.validate(config)
  started = provenance.now()
  seeds = cli.indices(seeds, '--seeds')
  folds = None if folds is None else cli.indices(folds, '--folds')
  plan = plan_runs(config, workdir, seeds, folds, start_over=start_over,
                   split_seed=split_seed)
  for seed, fold, _, _, result in plan:
    if result is not None:
      logging.info('seed %d fold %d: finished before, not redone', seed, fold)
  todo = [(config, fold_dir) for _, _, config, fold_dir, result in plan if result is None]
  trained = dict(zip([d for _, d in todo], train_runs(
      todo, parallel_runs=parallel_runs, start_over=start_over)))
  results = []
  for seed, _, _, fold_dir, result in plan:
    result = result if result is not None else trained[fold_dir]
    results.append({'fold': result['fold'], 'seed': seed, 'ua': result['ua'],
                    'wa': result['wa'], 'confusion': result['confusion'],
                    'classes': result['classes']})
  summary = report.fold_summary(results, results and results[0]['classes'])
  summary['split_seed'] = split_seed
  summary['provenance'] = provenance.describe(config, started)
  fileio.write_json(os.path.join(workdir, 'summary.json'), summary)
  fileio.atomic_write(os.path.join(workdir, 'summary.md'), report.markdown_table(summary))
  return summary


def train_runs(runs, *, parallel_runs: int | None = None,
               start_over: bool = False) -> list[dict]:
  """Trains `(config, workdir)` runs, up to `parallel_runs` side by side.

  Runs that can share a stack (`stacked.compatible`) train in stacks of
  `parallel_runs` (`stacked.train_and_evaluate`), in order; a stack of one
  trains alone (`train.train_and_evaluate`). `parallel_runs` None:
  `default_parallel_runs()`.

  Returns:
    Each run's results, in the order of `runs`.
  """
  size = default_parallel_runs() if parallel_runs is None else int(parallel_runs)
  if size < 1:
    raise ConfigError(f'--parallel_runs={parallel_runs}: must be at least 1')
  groups = {}
  for index, (config, _) in enumerate(runs):
    groups.setdefault(stacked.compatible(config), []).append(index)
  results = [None] * len(runs)
  done = 0
  for indices in groups.values():
    for start in range(0, len(indices), size):
      chunk = indices[start:start + size]
      names = ', '.join(runs[i][1] for i in chunk)
      logging.info('training %d of %d: %s', done + len(chunk), len(runs), names)
      if len(chunk) == 1:
        out = [train.train_and_evaluate(*runs[chunk[0]], start_over=start_over)]
      else:
        out = stacked.train_and_evaluate([runs[i][0] for i in chunk],
                                         [runs[i][1] for i in chunk], start_over=start_over)
      for i, result in zip(chunk, out):
        results[i] = result
      done += len(chunk)
  return results


def default_parallel_runs() -> int:
  """Runs side by side by default: 1 on a CPU; 4 on a GPU or TPU.

  (docs/performance.md, "Runs side by side": on this project's 2-core CPU a
  stack is no faster than the runs one after the other.)
  """
  return 1 if jax.default_backend() == 'cpu' else 4


def plan_runs(config, workdir: str, seeds, folds=None, *, start_over: bool = False,
              split_seed: int | None = None) -> list[tuple]:
  """`(seed, fold, config, workdir, finished result or None)` of every run.

  Every finished run's identity is checked here, before any training. The
  feature cache is `config.cache_dir`, else `<workdir>/jaxser_cache`: one
  for every seed and fold; the corpus is read once.
  """
  workdir_lib.ensure_writable(workdir, 'the crossval workdir (--workdir)')
  cache = config.cache_dir or os.path.join(workdir, 'jaxser_cache')
  workdir_lib.ensure_writable(cache, 'the feature cache (config.cache_dir)')
  utterances, labels, _ = prepare.load_corpus(config)
  content = fingerprint.corpus_fingerprint(utterances, cache)
  plan = []
  for seed in seeds:
    fold_config = config.copy_and_resolve_references()
    fold_config.seed = seed
    fold_config.split_seed = seed if split_seed is None else split_seed
    fold_config.cache_dir = cache
    count = len(protocols.make_folds(config.protocol, utterances, labels,
                                     seed=fold_config.split_seed,
                                     **config_lib.protocol_options(config)))
    for fold in (folds if folds is not None else range(count)):
      fold_config.fold = fold
      fold_dir = os.path.join(workdir, f'seed{seed}', f'fold{fold}')
      identity = run_record.run_identity(fold_config, content)
      done = None if start_over else _finished(fold_dir, identity)
      plan.append((seed, fold, fold_config.copy_and_resolve_references(), fold_dir, done))
  return plan


def _finished(fold_dir: str, identity: dict) -> dict | None:
  """The results of a finished run of this identity; None if unfinished.

  Raises:
    IdentityError: the run there is another run (config or corpus differ).
    JaxserError: its results.json cannot be read.
  """
  path = os.path.join(fold_dir, 'results.json')
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      result = json.load(f)
  except (OSError, ValueError) as e:
    raise JaxserError(f'{path}: unreadable ({fileio.reason(e)}); rerun with '
                      '--start_over to train it anew') from e
  run_record.check_identity(result.get('identity'), identity, path)
  return result


@cli.exits_on_error
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  split_seed = None if FLAGS.split_seed is None else cli.indices(
      [FLAGS.split_seed], '--split_seed')[0]
  summary = run(FLAGS.config, FLAGS.workdir, FLAGS.seeds, FLAGS.folds,
                start_over=FLAGS.start_over, split_seed=split_seed,
                parallel_runs=FLAGS.parallel_runs)
  print(report.markdown_table(summary))


if __name__ == '__main__':
  cli.run(main, define_flags)
