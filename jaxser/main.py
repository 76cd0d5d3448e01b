"""Trains and evaluates one fold: `python -m jaxser.main --config=... --workdir=...`.

  python -m jaxser.main --config=jaxser/configs/default.py --workdir=/tmp/ser \
      --config.corpus_root=/data/IEMOCAP_full_release --config.fold=2

Rerunning the same command resumes from the latest checkpoint in --workdir,
if it belongs to the same run (data, split, seeds, schedule, model and
features); a changed config is refused, naming what differs. --start_over
discards what an earlier run left in --workdir and trains anew.

Every local device is used (data parallel, `jaxser.parallel`). For several
processes (hosts), start the same command in each with --coordinator_address,
--num_processes and --process_id (or the JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES and JAX_PROCESS_ID environment variables).
"""

import os

from absl import app
from absl import flags
from absl import logging
import numpy as np

from jaxser import cli
from jaxser import parallel
from jaxser import train

__all__ = ['define_flags', 'main', 'summary_text']


def define_flags():
  """The command's flags (defined only when run as a program)."""
  cli.define_config_flags('Where checkpoints, metrics and plots go.')
  flags.DEFINE_bool('start_over', False, 'Discard the checkpoints, metrics and '
                    'results an earlier run left in --workdir and train from '
                    'the start.')
  flags.DEFINE_string('coordinator_address', None, 'host:port of process 0, for '
                      'a multi-process run (default: $JAX_COORDINATOR_ADDRESS; '
                      'none: a single process).')
  flags.DEFINE_integer('num_processes', None,
                       'Processes of a multi-process run ($JAX_NUM_PROCESSES).')
  flags.DEFINE_integer('process_id', None, 'This process, 0 to num_processes - 1 '
                       '($JAX_PROCESS_ID).')


@cli.exits_on_error
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  parallel.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                      FLAGS.process_id)
  if not parallel.is_chief():  # process 0 logs the run
    logging.set_verbosity(logging.WARNING)
  results = train.train_and_evaluate(FLAGS.config, FLAGS.workdir,
                                     start_over=FLAGS.start_over)
  if parallel.is_chief():
    print(summary_text(results, FLAGS.workdir))


def summary_text(results: dict, workdir: str) -> str:
  """What a person reads at the end of a run."""
  classes = results['classes']
  cm = np.asarray(results['confusion'], np.float64)
  rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
  width = max(len(c) for c in classes) + 2
  lines = [f'fold {results["fold"]}: test UA {100 * results["ua"]:.2f}%  '
           f'WA {100 * results["wa"]:.2f}%  (dev UA {100 * results["dev"]["ua"]:.2f}%, '
           f'selected step {results["selected_step"]})',
           'test confusion, row-normalised (rows: true class):',
           ' ' * width + ''.join(f'{c[:7]:>8}' for c in classes)]
  lines += [f'{c:<{width}}' + ''.join(f'{v:8.3f}' for v in row)
            for c, row in zip(classes, rows)]
  lines.append(f'results: {os.path.join(workdir, "results.json")}')
  for name, path in sorted(results.get('plots', {}).items()):
    lines.append(f'plot ({name}): {path}')
  lines.append(f'checkpoints: {os.path.join(workdir, "best")} (best dev UA), '
               f'{os.path.join(workdir, "checkpoints")} (latest)')
  return '\n'.join(lines)


if __name__ == '__main__':
  cli.run(main, define_flags)
