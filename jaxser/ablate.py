"""The paper's experiments as named ablation studies, with a written report.

  python -m jaxser.ablate --config=jaxser/configs/demo.py --workdir=workdir/ablate \
      --study=settings,lambda,alpha --seeds=0,1,2 [--folds=0,1] [--quick]

The studies are `jaxser.studies`' `settings` (the paper's settings 1-4),
`lambda` and `alpha` (its sweeps), `reading` (as written and as run) and
`augment` (generative augmentation, Ahn et al. 2025, of settings 1 and 2 at
two ratios: `jaxser.augment` on every run, `<study>/augment.json`);
docs/method.md, "Reported numbers", has what the paper measured. Every variant is a cross-validation run of
`jaxser.crossval` over the seeds and folds asked for; `jaxser.ablate_report`
writes the tables and `jaxser.plots` the figures.

A variant changes only `features.kind`, `center_loss_weight` (lambda) and
`center_alpha` (alpha) of the config and, for the `reading` study's "as run"
variants, the fields of `jaxser/configs/as_run.py`'s `AS_RUN`; everything
else is the config's.

Layout of `--workdir`:

  runs/<kind>_lambda<l>_alpha<a>/   one crossval workdir per distinct run:
                                    seed<s>/fold<k>/, summary.json, run.json
  <study>/<variant> -> ../runs/...  the study's variants, as links: a run that
                                    several studies share (log-Mel, lambda
                                    0.3, alpha 0.5 is in all three) trains once
  <study>/results.md, results.csv   measured mean +- std beside the paper's
  <study>/*.png                     the figures

Resuming: a (seed, fold) with a results.json is not retrained (crossval), and
a variant whose seeds and folds all finished reuses its summary.json without
calling crossval at all. Test-set embeddings are computed once per run from
its selected (best dev UA) checkpoint and kept in the fold's
`embeddings_test.npz`. `run.json` records the config a run was trained with;
asking for the same run with another config is refused, so a quick and a full
ablation cannot mix in one workdir.

`--quick` with `--config=jaxser/configs/demo.py:quick` makes the whole
ablation fit a 2-core CPU (`./launch.sh ablate --quick` passes both).
"""

import glob
import json
import math
import os
import re
import time
from typing import Sequence

from absl import app
from absl import flags
from absl import logging
import ml_collections
import numpy as np

from jaxser import ablate_report
from jaxser import cli
from jaxser import config_lib
from jaxser import crossval
from jaxser import evaluate
from jaxser import fileio
from jaxser import prepare as prepare_lib
from jaxser import report
from jaxser import run_record
from jaxser import workdir as workdir_lib
from jaxser.configs import as_run
from jaxser.data import fingerprint
from jaxser.errors import ConfigError
from jaxser.errors import JaxserError
from jaxser.studies import STUDIES
from jaxser.studies import Study
from jaxser.studies import Variant

__all__ = ['DEFAULT_SEEDS', 'QUICK_FOLDS', 'QUICK_SEEDS', 'define_flags',
           'fold_dirs', 'main', 'run',
           'run_study', 'run_variant', 'train_side_by_side', 'variant_config']


def define_flags():
  """The command's flags (defined only when run as a program)."""
  cli.define_config_flags('Root of the ablation.')
  flags.DEFINE_list('seeds', None, 'Seeds (default 0,1,2; with --quick 0).')
  flags.DEFINE_list('folds', None,
                    "Folds (default all of the protocol's; with --quick 0).")
  flags.DEFINE_list('study', ['settings', 'lambda', 'alpha'],
                    'Studies to run: settings, lambda, alpha, reading, augment.')
  flags.DEFINE_integer('parallel_runs', None, 'Runs trained side by side as one '
                       'program (jax.vmap), across variants; default 1 on a CPU, '
                       '4 on a GPU or TPU.')
  flags.DEFINE_bool('quick', False, 'One seed and one fold by default (with '
                    '--config=jaxser/configs/demo.py:quick: the CPU size).')


RUNS = 'runs'
# What a reusable crossval summary holds (an older one lacks some).
SUMMARY_FIELDS = {'ua', 'wa', 'f1', 'folds', 'confusion', 'provenance'}
RUN_RECORD = 'run.json'
DEFAULT_SEEDS = (0, 1, 2)

# --quick: one seed and one fold, for the CPU size of the demo config
# (`--config=jaxser/configs/demo.py:quick`, which `./launch.sh ablate --quick`
# passes).
QUICK_SEEDS = (0,)
QUICK_FOLDS = (0,)


# Config fields that do not change a run's results (or that crossval sets).
# A run folder holds several seeds and folds: its record holds the config
# less these and the corpus' content; crossval checks each run's identity.
_NOT_COMPARED = run_record.NOT_IDENTITY + ('seed', 'split_seed', 'fold')


def variant_config(config: ml_collections.ConfigDict,
                   variant: Variant) -> ml_collections.ConfigDict:
  """`config` with the variant's input features, lambda, alpha and reading."""
  config = config.copy_and_resolve_references()
  if variant.reading == 'run':
    config_lib.set_fields(config, as_run.AS_RUN)
  config.features.kind = variant.kind
  config.center_loss_weight = float(variant.lam)
  config.center_alpha = float(variant.alpha)
  return config


# --------------------------------------------------------------------------
# Running the variants.


def _read_json(path):
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _compared(config: ml_collections.ConfigDict) -> dict:
  values = json.loads(config.to_json_best_effort())
  return {k: v for k, v in values.items() if k not in _NOT_COMPARED}


def run_variant(config: ml_collections.ConfigDict, workdir: str, variant: Variant,
                seeds: Sequence[int], folds: Sequence[int] | None, *,
                corpus_content: str) -> dict:
  """Trains a variant's unfinished runs (or finds them all done).

  Args:
    config: the base config (the variant's fields are set here).
    workdir: the ablation's root; the runs go to `<workdir>/runs/<key>`.
    variant: what to run.
    seeds: the seeds, as ints.
    folds: the folds, as ints; None for all of the protocol's.
    corpus_content: the corpus' fingerprint, as `run_study` computes it.

  Returns:
    The crossval summary (`report.fold_summary`) of the variant.

  Raises:
    JaxserError: the run folder was trained with another config or corpus.
  """
  run_dir = os.path.join(workdir, RUNS, variant.key)
  config = variant_config(config, variant)
  wanted = _wanted(seeds, folds)
  summary = _finished_summary(run_dir, config, corpus_content, wanted)
  if summary is not None:
    return summary
  _write_record(run_dir, config, corpus_content, finished=None)
  summary = crossval.run(config, run_dir, [int(s) for s in seeds],
                         None if folds is None else [int(k) for k in folds])
  _write_record(run_dir, config, corpus_content, finished=wanted)
  return summary


def _wanted(seeds, folds) -> dict:
  """The seeds and folds a run folder's record says finished."""
  return {'seeds': list(seeds), 'folds': None if folds is None else list(folds)}


def _write_record(run_dir: str, config, corpus_content: str, *, finished) -> None:
  """`<run_dir>/run.json`: the config, the corpus and what finished (None: yet)."""
  os.makedirs(run_dir, exist_ok=True)
  fileio.write_json(os.path.join(run_dir, RUN_RECORD), {
      'config': _compared(config), 'corpus_content': corpus_content, 'finished': finished})


def _finished_summary(run_dir: str, config, corpus_content: str, wanted: dict):
  """The variant's summary if all its runs finished before, else None.

  Raises:
    JaxserError: the run folder was trained with another config or corpus.
  """
  record = _read_json(os.path.join(run_dir, RUN_RECORD))
  # With the seeds and folds, the config and the corpus' content are the
  # identity of every run in the folder (crossval checks each run's own).
  if record is not None:
    diffs = run_record.identity_differences(record['config'], _compared(config))
    if diffs:
      raise JaxserError(
          f'{run_dir} was trained with another config (differs in '
          f'{"; ".join(diffs)}); use another --workdir for this ablation')
    if record.get('corpus_content') != corpus_content:
      raise JaxserError(
          f"{run_dir} was trained on another corpus (the corpus' utterances or "
          'audio changed); use another --workdir for this ablation')
    summary = _read_json(os.path.join(run_dir, 'summary.json'))
    # A summary of an older jaxser (without a field this one reports) is
    # made again by crossval, from the finished runs, without training.
    if (record.get('finished') == wanted and summary is not None
        and SUMMARY_FIELDS <= set(summary)):
      logging.info('%s: all runs finished before, summary reused', run_dir)
      return summary
  return None


def train_side_by_side(config: ml_collections.ConfigDict, workdir: str,
                       studies: Sequence[Study], seeds: Sequence[int],
                       folds: Sequence[int] | None, parallel_runs: int) -> None:
  """Trains the unfinished runs of every variant, `parallel_runs` at a time.

  Runs of different variants stack too (a lambda or alpha sweep differs only
  in the step's inputs; `crossval.train_runs`). The variants' crossvals then
  find them finished. A run folder of another config or corpus is refused
  first, as `run_variant` refuses it.
  """
  config, content = _shared_cache(config, workdir)
  todo = []
  for variant in {v.key: v for study in studies for v in study.variants}.values():
    run_dir = os.path.join(workdir, RUNS, variant.key)
    variant_cfg = variant_config(config, variant)
    if _finished_summary(run_dir, variant_cfg, content, _wanted(seeds, folds)) is not None:
      continue
    _write_record(run_dir, variant_cfg, content, finished=None)
    todo += [(run_config, fold_dir) for _, _, run_config, fold_dir, done in
             crossval.plan_runs(variant_cfg, run_dir, seeds, folds) if done is None]
  logging.info('ablation: %d unfinished runs, up to %d side by side', len(todo),
               parallel_runs)
  crossval.train_runs(todo, parallel_runs=parallel_runs)


def _shared_cache(config: ml_collections.ConfigDict, workdir: str):
  """`(config with one feature cache for all the runs, the corpus' fingerprint)`."""
  config = config.copy_and_resolve_references()
  if not config.cache_dir:
    config.cache_dir = config_lib.cache_dir(config, workdir)
  utterances, _, _ = prepare_lib.load_corpus(config)  # what every variant reads
  return config, fingerprint.corpus_fingerprint(utterances, config.cache_dir)


def _link(study_dir: str, variant: Variant) -> None:
  """`<study>/<variant>` -> `../runs/<key>` (relative: the workdir can move)."""
  path = os.path.join(study_dir, variant.name)
  target = os.path.join('..', RUNS, variant.key)
  if os.path.islink(path):
    if os.readlink(path) == target:
      return
    os.remove(path)  # the study's definition changed
  elif os.path.exists(path):
    raise JaxserError(f'{path} exists and is not a link to {target}; move it away')
  os.symlink(target, path, target_is_directory=True)


def fold_dirs(run_dir: str, seeds: Sequence[int],
              folds: Sequence[int] | None) -> list[str]:
  """The finished `(seed, fold)` workdirs of a run, in seed then fold order."""
  out = []
  for seed in seeds:
    if folds is not None:
      out += [os.path.join(run_dir, f'seed{seed}', f'fold{k}') for k in folds]
    else:
      found = glob.glob(os.path.join(run_dir, f'seed{seed}', 'fold*', 'results.json'))
      found = [os.path.dirname(p) for p in found]
      out += sorted(found, key=lambda p: int(re.sub(r'\D', '', os.path.basename(p))))
  return out


# --------------------------------------------------------------------------
# One study.


def _compactness(split: dict) -> float:
  """`report.compactness` of a split's embeddings; NaN under two classes."""
  if len(np.unique(split['labels'])) < 2:
    return math.nan
  return report.compactness(split['z'], split['labels'])


def run_study(config: ml_collections.ConfigDict, workdir: str, study: Study,
              seeds: Sequence[int], folds: Sequence[int] | None = None, *,
              quick: bool = False) -> dict:
  """Runs (or finds) a study's variants and writes its report.

  Args:
    config: the base config.
    workdir: the ablation's root; the report goes to `<workdir>/<study>/`.
    study: the variants.
    seeds: the seeds, as ints.
    folds: the folds, as ints; None for all of the protocol's.
    quick: whether `config` is a `--quick` one (said in the report).

  Returns:
    {'rows': the table's rows, 'files': the paths written}.
  """
  config, content = _shared_cache(config, workdir)
  study_dir = os.path.join(workdir, study.name)
  os.makedirs(study_dir, exist_ok=True)
  names = [v.name for v in study.variants]
  if len(set(names)) != len(names):
    raise ValueError(f'study {study.name}: variant names repeat: {names}')
  rows, summaries, first_runs = [], {}, {}
  for number, variant in enumerate(study.variants, 1):
    logging.info('study %s, variant %d of %d: %s (%s)', study.name, number,
                 len(study.variants), variant.name, variant.key)
    start = time.perf_counter()
    summary = run_variant(config, workdir, variant, seeds, folds,
                          corpus_content=content)
    _link(study_dir, variant)
    dirs = fold_dirs(os.path.join(workdir, RUNS, variant.key), seeds, folds)
    # The first run's training embeddings too: its PCA figure needs them.
    first = evaluate.run_embeddings(dirs[0], ('train', 'test'))
    test_sets = [first['test']] + [evaluate.run_embeddings(d)['test'] for d in dirs[1:]]
    compact = [_compactness(e) for e in test_sets]
    first_runs[variant.name] = (dirs[0], compact[0], first)
    summaries[variant.name] = summary
    rows.append(ablate_report.variant_row(study, variant, summary, compact))
    logging.info('study %s, %s: UA %.2f WA %.2f (%.0f s)', study.name,
                 variant.name, rows[-1]['ua_mean'], rows[-1]['wa_mean'],
                 time.perf_counter() - start)
  sections, augmented = _augment(config, study, study_dir, seeds, folds)
  files = ablate_report.write(study, study_dir, rows, summaries, first_runs,
                             config, seeds, folds, quick=quick, sections=sections)
  return {'rows': rows, 'files': files, **({'augment': augmented} if augmented else {})}


def _augment(config, study: Study, study_dir: str, seeds, folds):
  """`augment_study.study_section` of the study's runs; ([], {}) without ratios."""
  if not study.augment_ratios:
    return [], {}
  from jaxser import augment_study  # pylint: disable=g-import-not-at-top (it imports flax)
  runs_dir = os.path.join(os.path.dirname(study_dir), RUNS)
  runs = {v.name: (fold_dirs(os.path.join(runs_dir, v.key), seeds, folds),
                   variant_config(config, v), v.lam) for v in study.variants}
  return augment_study.study_section(runs, study.augment_ratios, study_dir)


# --------------------------------------------------------------------------
# The command.


def run(config: ml_collections.ConfigDict, workdir: str, studies: Sequence[Study],
        seeds: Sequence[int], folds: Sequence[int] | None = None, *,
        quick: bool = False, parallel_runs: int | None = None) -> dict:
  """Runs the studies in order; returns study name -> `run_study`'s result.

  With `parallel_runs` above 1 (default `crossval.default_parallel_runs()`)
  every unfinished run of every study is trained first, that many side by
  side (`train_side_by_side`).
  """
  config_lib.validate(config)
  distinct = {v.key for study in studies for v in study.variants}
  logging.info('ablation in %s: %d studies, %d distinct runs x %d seeds x %s folds',
               workdir, len(studies), len(distinct), len(seeds),
               'all' if folds is None else len(folds))
  if parallel_runs is None:
    parallel_runs = crossval.default_parallel_runs()
  if parallel_runs > 1:
    train_side_by_side(config, workdir, studies, seeds, folds, parallel_runs)
  return {study.name: run_study(config, workdir, study, seeds, folds, quick=quick)
          for study in studies}


def _paper_ua(value) -> str:
  return '-' if value is None else f'{value:.2f}'


@cli.exits_on_error
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  unknown = [name for name in FLAGS.study if name not in STUDIES]
  if unknown:
    raise ConfigError(f'--study: unknown studies {unknown} (known: {", ".join(STUDIES)})')
  quick = FLAGS.quick
  config = FLAGS.config
  seeds = cli.indices(FLAGS.seeds or (QUICK_SEEDS if quick else DEFAULT_SEEDS), '--seeds')
  folds = FLAGS.folds or (QUICK_FOLDS if quick else None)
  folds = None if folds is None else cli.indices(folds, '--folds')
  workdir_lib.ensure_writable(FLAGS.workdir, 'the ablation workdir (--workdir)')
  results = run(config, FLAGS.workdir, [STUDIES[n] for n in FLAGS.study],
                seeds, folds, quick=quick, parallel_runs=FLAGS.parallel_runs)
  for name, result in results.items():
    print(f'{name}: {os.path.join(FLAGS.workdir, name, "results.md")}')
    for row in result['rows']:
      print(f'  {row["variant"]:<26} UA {row["ua_mean"]:6.2f} ± {row["ua_std"]:5.2f}'
            f'  WA {row["wa_mean"]:6.2f} ± {row["wa_std"]:5.2f}'
            f'  paper UA {_paper_ua(row["paper_ua"]):>6}'
            f'  compactness {row["compactness_mean"]:.3f}')


if __name__ == '__main__':
  cli.run(main, define_flags)
