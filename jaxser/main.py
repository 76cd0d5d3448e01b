"""Trains and evaluates one fold: `python -m jaxser.main --config=... --workdir=...`.

  python -m jaxser.main --config=configs/default.py --workdir=/tmp/ser \
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
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import numpy as np

# Config files import their base as `from configs import default`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxser import cli  # pylint: disable=g-import-not-at-top
from jaxser import parallel  # pylint: disable=g-import-not-at-top
from jaxser import train  # pylint: disable=g-import-not-at-top

_WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints, metrics and plots go.')
config_flags.DEFINE_config_file('config', None, 'The experiment config file.',
                                lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])
_START_OVER = flags.DEFINE_bool(
    'start_over', False, 'Discard the checkpoints, metrics and results an '
    'earlier run left in --workdir and train from the start.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0, for a multi-process '
    'run (default: $JAX_COORDINATOR_ADDRESS; none: a single process).')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'Processes of a multi-process run ($JAX_NUM_PROCESSES).')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, 'This process, 0 to num_processes - 1 ($JAX_PROCESS_ID).')


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with an unknown `--config.<field>` as a one-line error.

  ml_collections raises AttributeError (or KeyError) from inside the flag
  parser for a field the config does not have, which would end in a
  traceback.
  """
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError) as e:
    detail = e
    while isinstance(detail, BaseException) and detail.args:
      detail = detail.args[0]  # the KeyError inside, then its text
    detail = str(detail).replace('\n', '; ')
    overrides = [a.split('=')[0] for a in argv[1:] if a.startswith('--config.')]
    if not any(f"'{o.rsplit('.', 1)[-1]}'" in detail for o in overrides):
      raise  # not an override's field: an error in the config file itself
    sys.exit(f'jaxser: unknown config field {detail} (overrides given: '
             f'{", ".join(overrides)}); the config file lists the fields that exist')


@cli.exits_on_error
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  parallel.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if not parallel.is_chief():  # process 0 logs the run
    logging.set_verbosity(logging.WARNING)
  results = train.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value,
                                     start_over=_START_OVER.value)
  if parallel.is_chief():
    print(summary_text(results, _WORKDIR.value))


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
  app.run(main, flags_parser=parse_flags)
