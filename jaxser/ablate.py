"""The paper's experiments as named ablation studies, with a written report.

  python -m jaxser.ablate --config=configs/demo.py --workdir=workdir/ablate \
      --study=settings,lambda,alpha --seeds=0,1,2 [--folds=0,1] [--quick]

Studies (SPEC.md section 6; every variant is a cross-validation run of
`jaxser.crossval` over the seeds and folds asked for):

- `settings`: the paper's settings 1-4, log-Mel or log-STFT input, lambda 0
  (softmax only) or 0.3 (alpha 0.5); Figure 5 and Tables 1-2.
- `lambda`: lambda = 0, 0.003, 0.03, 0.3, 3 on log-Mel, alpha 0.5; Figure 3.
- `alpha`: alpha = 0.1, 0.3, 0.5, 0.7, 0.9 on log-Mel, lambda 0.3; Figure 3.

A variant changes only `features.kind`, `center_loss_weight` (lambda) and
`center_alpha` (alpha) of the config; everything else is the config's.

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

`--quick` makes the whole ablation fit a 2-core CPU: see `QUICK`.
"""

import csv
import glob
import json
import math
import os
import re
import sys
import time
from typing import NamedTuple, Sequence

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxser import cli  # pylint: disable=g-import-not-at-top
from jaxser import crossval  # pylint: disable=g-import-not-at-top
from jaxser import experiment  # pylint: disable=g-import-not-at-top
from jaxser import fileio  # pylint: disable=g-import-not-at-top
from jaxser import parallel  # pylint: disable=g-import-not-at-top
from jaxser import report  # pylint: disable=g-import-not-at-top
from jaxser import train  # pylint: disable=g-import-not-at-top
from jaxser.errors import ConfigError  # pylint: disable=g-import-not-at-top
from jaxser.errors import JaxserError  # pylint: disable=g-import-not-at-top



def define_flags():
  """The command's flags (defined only when run as a program)."""
  flags.DEFINE_string('workdir', None, 'Root of the ablation.')
  flags.DEFINE_list('seeds', None, 'Seeds (default 0,1,2; with --quick 0).')
  flags.DEFINE_list('folds', None,
                    "Folds (default all of the protocol's; with --quick 0).")
  flags.DEFINE_list('study', ['settings', 'lambda', 'alpha'],
                    'Studies to run: settings, lambda, alpha.')
  flags.DEFINE_bool('quick', False, 'CPU size: the overrides of jaxser.ablate.QUICK.')
  config_flags.DEFINE_config_file('config', None, 'The experiment config file.')
  flags.mark_flags_as_required(['config', 'workdir'])

RUNS = 'runs'
RUN_RECORD = 'run.json'
DEFAULT_SEEDS = (0, 1, 2)

# --quick: the whole ablation (11 distinct runs, two of them log-STFT) on a
# 2-core CPU. Measured on the shared 2-core machine with other jobs running
# (load ~4), batch 32 x 300 frames: the paper model takes 6.3 s a step on
# log-Mel and 35 s on log-STFT, so a 30-minute budget would give each run ~30
# steps. With these overrides a log-Mel run takes ~65 s (0.4 s a step) and a
# log-STFT run ~5 min (2.5 s a step), the three studies ~23 minutes at that
# load (estimated; less on an idle machine).
QUICK = {
    'num_train_steps': 100,  # 2.5 epochs of the demo's 638 training utterances
    'batch_size': 16,  # more updates for the same compute
    'warmup_steps': 10,  # lambda 0, alpha 1 first, as the paper's 20 of 3520
    'eval_start_step': 40,  # dev UA at steps 50, 60, ..., 100 selects the
    'eval_every_steps': 10,  # checkpoint
    'log_every_steps': 10,
    'checkpoint_every_steps': 50,
    'features.max_frames': 200,  # the middle 2 s (the demo's mean is 2.8 s)...
    'buckets': (200,),  # ...in one padded length: one compile per run
    'model.convs': ((24, 7, 2, 0), (32, 3, 1, 2), (40, 3, 1, 2), (48, 3, 1, 2)),
    'model.gru_units': 64,  # half the paper's widths; embedding_dim stays 64
    'plots': False,  # no per-fold PNGs (the study's figures are still made)
}
QUICK_SEEDS = (0,)
QUICK_FOLDS = (0,)


class Variant(NamedTuple):
  """One configuration of a study."""
  name: str  # the variant's folder name in its study
  kind: str  # 'mel' | 'stft'
  lam: float  # lambda, the centre-loss weight
  alpha: float  # the centre update rate

  @property
  def key(self) -> str:
    """The run's name: variants with the same key are the same run."""
    return f'{self.kind}_lambda{self.lam:g}_alpha{self.alpha:g}'


class Study(NamedTuple):
  name: str
  title: str
  variants: tuple[Variant, ...]


STUDIES = {
    'settings': Study('settings', "The paper's settings 1-4 (Figure 5, Tables 1-2)", (
        Variant('setting1_mel_lambda0', 'mel', 0.0, 0.5),
        Variant('setting2_mel_lambda0.3', 'mel', 0.3, 0.5),
        Variant('setting3_stft_lambda0', 'stft', 0.0, 0.5),
        Variant('setting4_stft_lambda0.3', 'stft', 0.3, 0.5))),
    'lambda': Study('lambda', 'lambda sweep, log-Mel, alpha 0.5 (Figure 3)', tuple(
        Variant(f'lambda{lam:g}', 'mel', lam, 0.5)
        for lam in (0.0, 0.003, 0.03, 0.3, 3.0))),
    'alpha': Study('alpha', 'alpha sweep, log-Mel, lambda 0.3 (Figure 3)', tuple(
        Variant(f'alpha{alpha:g}', 'mel', 0.3, alpha)
        for alpha in (0.1, 0.3, 0.5, 0.7, 0.9))),
}


class Paper(NamedTuple):
  setting: str  # '1'..'4', or '' for a point of a sweep only
  ua: float  # %
  wa: float | None  # %
  confusion: tuple | None  # [4, 4] row-normalised, rows neu, ang, hap, sad


# SPEC.md section 6: IEMOCAP, the paper's protocol. Keyed by (features,
# lambda, alpha); alpha is None where lambda is 0 (the centres are unused).
PAPER = {
    ('mel', 0.0, None): Paper('1', 63.80, 61.83, (
        (.575, .095, .164, .166), (.119, .691, .155, .035),
        (.211, .162, .511, .115), (.138, .026, .060, .776))),
    ('mel', 0.3, 0.5): Paper('2', 66.86, 65.40, (
        (.637, .067, .167, .127), (.108, .705, .167, .020),
        (.219, .131, .556, .094), (.128, .025, .070, .777))),
    ('stft', 0.0, None): Paper('3', 60.97, 58.93, None),
    ('stft', 0.3, 0.5): Paper('4', 65.13, 62.96, None),
    ('mel', 0.003, 0.5): Paper('', 64.81, None, None),
    ('mel', 0.03, 0.5): Paper('', 65.71, None, None),
    ('mel', 3.0, 0.5): Paper('', 60.08, None, None),
    ('mel', 0.3, 0.1): Paper('', 66.76, None, None),
    ('mel', 0.3, 0.3): Paper('', 66.85, None, None),
    ('mel', 0.3, 0.7): Paper('', 66.96, None, None),
    ('mel', 0.3, 0.9): Paper('', 66.41, None, None),
}
PAPER_CLASSES = ('neutral', 'angry', 'happy', 'sad')
# Config fields that do not change a run's results (or that crossval sets).
# A run folder holds several seeds and folds; each one's own identity (with
# the corpus' content) is checked by crossval.
_NOT_COMPARED = experiment.NOT_IDENTITY + ('seed', 'split_seed', 'fold')


def paper_result(variant: Variant) -> Paper | None:
  """The paper's numbers for a variant's configuration, if it reports them."""
  lam = round(float(variant.lam), 6)
  alpha = None if lam == 0 else round(float(variant.alpha), 6)
  return PAPER.get((variant.kind, lam, alpha))


def quick_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with the `QUICK` overrides."""
  config = config.copy_and_resolve_references()
  for dotted, value in QUICK.items():
    *parents, field = dotted.split('.')
    node = config
    for part in parents:
      node = node[part]
    node[field] = value
  return config


def variant_config(config: ml_collections.ConfigDict,
                   variant: Variant) -> ml_collections.ConfigDict:
  """`config` with the variant's input features, lambda and alpha."""
  config = config.copy_and_resolve_references()
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
                seeds: Sequence[int], folds: Sequence[int] | None) -> dict:
  """Trains a variant's unfinished runs (or finds them all done).

  Args:
    config: the base config (the variant's fields are set here).
    workdir: the ablation's root; the runs go to `<workdir>/runs/<key>`.
    variant: what to run.
    seeds: the seeds, as ints.
    folds: the folds, as ints; None for all of the protocol's.

  Returns:
    The crossval summary (`report.fold_summary`) of the variant.

  Raises:
    JaxserError: the run folder was trained with another config.
  """
  run_dir = os.path.join(workdir, RUNS, variant.key)
  config = variant_config(config, variant)
  record_path = os.path.join(run_dir, RUN_RECORD)
  record = _read_json(record_path)
  wanted = {'seeds': list(seeds), 'folds': None if folds is None else list(folds)}
  if record is not None:
    if record['config'] != _compared(config):
      diffs = sorted(k for k in set(record['config']) | set(_compared(config))
                     if record['config'].get(k) != _compared(config).get(k))
      raise JaxserError(
          f'{run_dir} was trained with another config (differs in '
          f'{", ".join(diffs)}); use another --workdir for this ablation')
    summary = _read_json(os.path.join(run_dir, 'summary.json'))
    if record.get('finished') == wanted and summary is not None:
      logging.info('%s: all runs finished before, summary reused', run_dir)
      return summary
  os.makedirs(run_dir, exist_ok=True)
  fileio.write_json(record_path, {'config': _compared(config), 'finished': None})
  summary = crossval.run(config, run_dir, [int(s) for s in seeds],
                         None if folds is None else [int(k) for k in folds])
  fileio.write_json(record_path, {'config': _compared(config), 'finished': wanted})
  return summary


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


def fold_embeddings(fold_dir: str, splits: Sequence[str] = ('test',)) -> dict:
  """Embeddings of a fold's splits under its selected parameters, cached.

  Runs `train.evaluate` on the fold's data (`experiment.prepare` with the
  config saved in the checkpoint). Each split is kept in
  `<fold_dir>/embeddings_<split>.npz` and read back from there later.

  Returns:
    split -> {'z': `[n, dim]`, 'labels': `[n]`, 'ua': the re-evaluated UA,
    'confusion': `[C, C]` counts}.
  """
  paths = {s: os.path.join(fold_dir, f'embeddings_{s}.npz') for s in splits}
  missing = [s for s in splits if not os.path.exists(paths[s])]
  if missing:
    # The selected checkpoint, evaluated as the training run evaluates: the
    # package's jitted eval step over every device, the state replicated.
    meta, state = train.restore_selected(fold_dir)
    config = ml_collections.ConfigDict(meta['config'])
    data = experiment.prepare(config, fold_dir)
    mesh = parallel.make_mesh()
    state = parallel.replicate(state, mesh)
    eval_fn = train.make_eval_step(mesh)
    for split in missing:
      metrics, out = train.evaluate(
          eval_fn, state, getattr(data, split), batch_size=config.eval_batch_size,
          buckets=tuple(config.buckets), num_classes=data.label_map.num_classes,
          mesh=mesh)
      tmp = paths[split] + '.tmp.npz'
      np.savez(tmp, z=out['embeddings'], labels=out['labels'], ua=metrics['ua'],
               confusion=np.asarray(metrics['confusion']))
      os.replace(tmp, paths[split])
  out = {}
  for split, path in paths.items():
    with np.load(path) as saved:
      out[split] = {'z': saved['z'], 'labels': saved['labels'],
                    'ua': float(saved['ua']), 'confusion': saved['confusion']}
  return out


# --------------------------------------------------------------------------
# One study.


def _pct(value):
  return None if value is None else 100 * value


def _compactness(split: dict) -> float:
  """`report.compactness` of a split's embeddings; NaN under two classes."""
  if len(np.unique(split['labels'])) < 2:
    return math.nan
  return report.compactness(split['z'], split['labels'])


def _row(study: Study, variant: Variant, summary: dict, compact: list[float]) -> dict:
  """The study table's row of a variant (percentages, as the paper's)."""
  paper = paper_result(variant)
  return {
      'study': study.name, 'variant': variant.name, 'run': variant.key,
      'features': variant.kind, 'lambda': variant.lam, 'alpha': variant.alpha,
      'runs': summary['num_folds'],
      'ua_mean': _pct(summary['ua']['mean']), 'ua_std': _pct(summary['ua']['std']),
      'wa_mean': _pct(summary['wa']['mean']), 'wa_std': _pct(summary['wa']['std']),
      'paper_setting': paper.setting if paper else '',
      'paper_ua': paper.ua if paper else None,
      'paper_wa': paper.wa if paper else None,
      'compactness_mean': float(np.mean(compact)),
      'compactness_std': float(np.std(compact)),
  }


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
  config = config.copy_and_resolve_references()
  if not config.cache_dir:  # one feature cache for all the runs
    config.cache_dir = experiment.cache_dir(config, workdir)
  study_dir = os.path.join(workdir, study.name)
  os.makedirs(study_dir, exist_ok=True)
  names = [v.name for v in study.variants]
  if len(set(names)) != len(names):
    raise ValueError(f'study {study.name}: variant names repeat: {names}')
  rows, summaries, embeddings = [], {}, {}
  for number, variant in enumerate(study.variants, 1):
    logging.info('study %s, variant %d of %d: %s (%s)', study.name, number,
                 len(study.variants), variant.name, variant.key)
    start = time.perf_counter()
    summary = run_variant(config, workdir, variant, seeds, folds)
    _link(study_dir, variant)
    dirs = fold_dirs(os.path.join(workdir, RUNS, variant.key), seeds, folds)
    # The first run's training embeddings too: its PCA figure needs them.
    test_sets = [fold_embeddings(d, ('train', 'test') if d == dirs[0] else ('test',))
                 ['test'] for d in dirs]
    compact = [_compactness(e) for e in test_sets]
    embeddings[variant.name] = (dirs[0], compact[0])
    summaries[variant.name] = summary
    rows.append(_row(study, variant, summary, compact))
    logging.info('study %s, %s: UA %.2f WA %.2f (%.0f s)', study.name,
                 variant.name, rows[-1]['ua_mean'], rows[-1]['wa_mean'],
                 time.perf_counter() - start)
  files = write_report(study, study_dir, rows, summaries, embeddings,
                       config, seeds, folds, quick=quick)
  return {'rows': rows, 'files': files}


# --------------------------------------------------------------------------
# The report: table, claims, figures.


def _fmt(value, digits=2):
  return '' if value is None else f'{value:.{digits}f}'


def write_csv(rows: Sequence[dict], path: str) -> str:
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
      writer.writerow({k: ('' if v is None else round(v, 4) if isinstance(v, float)
                           else v) for k, v in row.items()})
  return path


def _gain_lines(rows):
  """Measured vs paper gain of lambda 0.3 (alpha 0.5) over lambda 0, per input."""
  lines = []
  for kind in ('mel', 'stft'):
    base = [r for r in rows if r['features'] == kind and r['lambda'] == 0]
    center = [r for r in rows if r['features'] == kind and r['lambda'] == 0.3
              and r['alpha'] == 0.5]
    if not (base and center):
      continue
    base, center = base[0], center[0]
    parts = []
    for metric in ('ua', 'wa'):
      measured = center[f'{metric}_mean'] - base[f'{metric}_mean']
      paper = ((center[f'paper_{metric}'] or math.nan) -
               (base[f'paper_{metric}'] or math.nan))
      parts.append(f'{metric.upper()} {measured:+.2f} points (paper {paper:+.2f})')
    lines.append(f'- Centre loss on {kind} input (lambda 0.3 vs 0): '
                 f'{", ".join(parts)}; same sign as the paper: '
                 f'{"yes" if center["ua_mean"] > base["ua_mean"] else "no"} (UA).')
    with_c, without = center['compactness_mean'], base['compactness_mean']
    ratio = f'ratio {with_c / without:.2f}; ' if without > 0 else ''
    lines.append(f'- Compactness of the {kind} test embeddings: {with_c:.3f} '
                 f'with the centre loss vs {without:.3f} without ({ratio}the '
                 "paper's Figure 4: more compact with it; here: "
                 f'{"yes" if with_c < without else "no"}).')
  return lines


def _sweep(rows, field):
  """The rows sorted by `field` if they differ in it alone (2+ values), else None."""
  others = {'lambda': 'alpha', 'alpha': 'lambda'}[field]
  if len({(r['features'], r[others]) for r in rows}) != 1:
    return None
  if len({r[field] for r in rows}) < 2:
    return None
  return sorted(rows, key=lambda r: r[field])


def _spread(rows, key):
  values = [r[key] for r in rows if r[key] is not None]
  return max(values) - min(values) if values else math.nan


def _claim_lines(rows):
  """One line per claim of the paper that the study's rows can test."""
  lines = _gain_lines(rows)
  by_lambda = _sweep(rows, 'lambda')
  if by_lambda and len(by_lambda) >= 3:
    best = max(by_lambda, key=lambda r: r['ua_mean'])
    line = (f'- lambda sweep: the best mean UA is at lambda {best["lambda"]:g} '
            f'({best["ua_mean"]:.2f} %)')
    with_paper = [r for r in by_lambda if r['paper_ua'] is not None]
    if with_paper:
      paper_best = max(with_paper, key=lambda r: r['paper_ua'])
      line += (f'; the paper\'s is at lambda {paper_best["lambda"]:g} '
               f'({paper_best["paper_ua"]:.2f} %)')
    lines.append(line + '.')
  by_alpha = _sweep(rows, 'alpha')
  if by_alpha and len(by_alpha) >= 3:
    alphas = ', '.join(f'{r["alpha"]:g}' for r in by_alpha)
    typical_std = float(np.mean([r['ua_std'] for r in by_alpha]))
    lines.append(f'- alpha sweep: mean UA spans {_spread(by_alpha, "ua_mean"):.2f} '
                 f'points over alpha {alphas} (the UA std over runs is '
                 f'{typical_std:.2f} on average); the paper\'s spans '
                 f'{_spread(by_alpha, "paper_ua"):.2f} points (insensitive to alpha).')
  return lines


def _confusion_lines(variant_name, summary, paper):
  names = summary['class_names']
  show_paper = paper is not None and paper.confusion and tuple(names) == PAPER_CLASSES
  lines = [f'`{variant_name}`' + (f' (paper: setting {paper.setting}, in brackets)'
                                  if show_paper else '') + ':', '',
           '| true \\ predicted | ' + ' | '.join(names) + ' |',
           '|---|' + '---:|' * len(names)]
  for i, (name, row) in enumerate(zip(names, summary['confusion'])):
    cells = [f'{v:.3f}' + (f' ({paper.confusion[i][j]:.3f})' if show_paper else '')
             for j, v in enumerate(row)]
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return lines + ['']


def _setup_line(config, seeds, folds, quick):
  filters = '/'.join(str(layer[0]) for layer in config.model.convs)
  return (f'Measured on corpus `{config.corpus}`, protocol `{config.protocol}`, '
          f'seeds {", ".join(map(str, seeds))}, folds '
          f'{"all" if folds is None else ", ".join(map(str, folds))}; '
          f'{config.num_train_steps} steps of batch {config.batch_size}, '
          f'conv filters {filters}, GRU {config.model.gru_units}, '
          f'at most {config.features.max_frames} frames'
          + (' (`--quick`: a CPU size, see `jaxser.ablate.QUICK`)' if quick else '')
          + ". The paper's numbers are IEMOCAP under its own protocol "
          '(SPEC.md section 6): compare trends, not values.')


def markdown(study: Study, rows, summaries, figures, config, seeds, folds,
             quick=False) -> str:
  """The study's results.md."""
  header = ('variant', 'input', 'λ', 'α', 'runs', 'UA %', 'WA %', 'paper UA %',
            'paper WA %', 'compactness')
  lines = [f'# Study `{study.name}`: {study.title}', '',
           _setup_line(config, seeds, folds, quick), '',
           '| ' + ' | '.join(header) + ' |', '|---|---|---:|---:|' + '---:|' * 6]
  for r in rows:
    setting = f' (setting {r["paper_setting"]})' if r['paper_setting'] else ''
    lines.append(
        f'| `{r["variant"]}`{setting} | {r["features"]} | {r["lambda"]:g} | '
        f'{r["alpha"]:g} | {r["runs"]} | {r["ua_mean"]:.2f} ± {r["ua_std"]:.2f} | '
        f'{r["wa_mean"]:.2f} ± {r["wa_std"]:.2f} | {_fmt(r["paper_ua"])} | '
        f'{_fmt(r["paper_wa"])} | {r["compactness_mean"]:.3f} ± '
        f'{r["compactness_std"]:.3f} |')
  lines += ['', '± is the population standard deviation over the runs (every '
            'seed and fold). Compactness: the mean distance of a test embedding '
            'z to its class mean over the mean distance between the class means '
            '(`report.compactness`; lower is more compact), per run, then mean '
            '± std.', '']
  claims = _claim_lines(rows)
  if claims:
    lines += ["## The paper's claims, measured", ''] + claims + ['']
  lines += ['## Confusion matrices (Tables 1-2)', '',
            'Row-normalised test confusion, the mean over the runs of each '
            "run's row-normalised matrix (the figures show the summed counts).", '']
  for variant in study.variants:
    lines += _confusion_lines(variant.name, summaries[variant.name],
                              paper_result(variant))
  lines += ['## Figures', '']
  for caption, path in figures:
    name = os.path.basename(path)
    lines += [f'{caption}:', '', f'![{name}]({name})', '']
  return '\n'.join(lines)


def write_report(study, study_dir, rows, summaries, embeddings, config, seeds,
                 folds, *, quick=False) -> list[str]:
  """results.csv, the figures and results.md in `study_dir`; their paths."""
  from jaxser import plots  # pylint: disable=g-import-not-at-top (matplotlib is slow to import)
  figures = [('UA and WA per variant, the paper\'s as markers (Figure 5)',
              _bars(rows, os.path.join(study_dir, 'ua_wa_bars.png'), study.title))]
  for field in ('lambda', 'alpha'):
    swept = _sweep(rows, field)
    if swept:
      path = os.path.join(study_dir, f'ua_wa_vs_{field}.png')
      figures.append((f'UA and WA against {field} (Figure 3)',
                      _curve(swept, field, path, study.title)))
  for variant in study.variants:
    fold_dir, compact = embeddings[variant.name]
    both = fold_embeddings(fold_dir, ('train', 'test'))
    classes = summaries[variant.name]['class_names']
    path = os.path.join(study_dir, f'pca_{variant.name}.png')
    figures.append((f'`{variant.name}`: PCA of the embeddings, '
                    f'{os.path.relpath(fold_dir, os.path.dirname(study_dir))} '
                    '(Figure 4)', plots.embeddings_pca(
                        both['train']['z'], both['train']['labels'],
                        both['test']['z'], both['test']['labels'], classes, path,
                        title=f'{variant.name}: test compactness {compact:.3f}')))
  for variant in study.variants:
    summary = summaries[variant.name]
    path = os.path.join(study_dir, f'confusion_{variant.name}.png')
    figures.append((f'`{variant.name}`: test confusion (Tables 1-2)', plots.confusion(
        np.asarray(summary['confusion_counts']), summary['class_names'], path,
        title=f'{variant.name}: summed over {summary["num_folds"]} runs, row-normalised')))
  files = [write_csv(rows, os.path.join(study_dir, 'results.csv'))]
  md_path = os.path.join(study_dir, 'results.md')
  with open(md_path, 'w') as f:
    f.write(markdown(study, rows, summaries, figures, config, seeds, folds, quick))
  logging.info('study %s: wrote %s', study.name, md_path)
  return files + [md_path] + [path for _, path in figures]


def _figure(width, height):
  from matplotlib import figure as mpl_figure  # pylint: disable=g-import-not-at-top
  return mpl_figure.Figure(figsize=(width, height))


def _bars(rows, path, title):
  """Grouped UA/WA bars (mean, std, each run's value comes from the table)."""
  from jaxser import plots  # pylint: disable=g-import-not-at-top
  fig = _figure(2 + 1.4 * len(rows), 4.5)
  ax = fig.add_subplot()
  x = np.arange(len(rows))
  for offset, metric, colour in ((-0.2, 'ua', 'steelblue'), (0.2, 'wa', 'darkorange')):
    means = [r[f'{metric}_mean'] for r in rows]
    ax.bar(x + offset, means, width=0.38, yerr=[r[f'{metric}_std'] for r in rows],
           capsize=3, color=colour, alpha=0.75, label=f'{metric.upper()} measured')
    for xi, mean in zip(x + offset, means):
      ax.annotate(f'{mean:.1f}', (xi, mean), textcoords='offset points',
                  xytext=(0, 2), ha='center', va='bottom', fontsize=7)
    paper = [(xi, r[f'paper_{metric}']) for xi, r in zip(x + offset, rows)
             if r[f'paper_{metric}'] is not None]
    if paper:
      ax.scatter(*zip(*paper), marker='D', s=28, color=colour, edgecolor='black',
                 zorder=3, label=f'{metric.upper()} paper (IEMOCAP)')
  ax.set_xticks(x, [r['variant'] for r in rows], rotation=20, ha='right')
  top = max(max(r['ua_mean'] + r['ua_std'], r['wa_mean'] + r['wa_std'],
                r['paper_ua'] or 0, r['paper_wa'] or 0) for r in rows)
  ax.set_ylim(0, 1.25 * top)  # room for the legend above the bars
  ax.set_ylabel('%')
  ax.set_title(title)
  ax.grid(axis='y', alpha=0.3)
  ax.legend(fontsize=8, loc='upper center', ncol=2)
  return plots._save(fig, path)  # pylint: disable=protected-access


def _curve(rows, field, path, title):
  """UA/WA (mean ± std) against lambda (log axis, 0 drawn left of a break) or alpha."""
  from jaxser import plots  # pylint: disable=g-import-not-at-top
  values = np.array([r[field] for r in rows], np.float64)
  positive = values[values > 0]
  logx = field == 'lambda' and len(positive) > 0
  # On the log axis lambda 0 sits a decade below the smallest positive value.
  zero_at = positive.min() / 10 if logx else 0.0
  x = np.where(values > 0, values, zero_at)
  fig = _figure(6, 4.2)
  ax = fig.add_subplot()
  for metric, colour in (('ua', 'steelblue'), ('wa', 'darkorange')):
    ax.errorbar(x, [r[f'{metric}_mean'] for r in rows],
                yerr=[r[f'{metric}_std'] for r in rows], marker='o', capsize=3,
                color=colour, label=f'{metric.upper()} measured')
    paper = [(xi, r[f'paper_{metric}']) for xi, r in zip(x, rows)
             if r[f'paper_{metric}'] is not None]
    if paper:
      ax.plot(*zip(*paper), linestyle='--', marker='D', color=colour, alpha=0.6,
              label=f'{metric.upper()} paper (IEMOCAP)')
  if logx:
    ax.set_xscale('log')
    ax.set_xticks(x, [f'{v:g}' for v in values])
    ax.minorticks_off()
    if np.any(values == 0):
      ax.axvline(np.sqrt(zero_at * positive.min()), color='grey', linestyle=':',
                 linewidth=1)  # the axis is broken here: 0 is not on the log scale
  else:
    ax.set_xticks(values, [f'{v:g}' for v in values])
  ax.set_xlabel('λ (centre-loss weight)' if field == 'lambda' else
                'α (centre update rate)')
  ax.set_ylabel('%')
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return plots._save(fig, path)  # pylint: disable=protected-access


# --------------------------------------------------------------------------
# The command.


def run(config: ml_collections.ConfigDict, workdir: str, studies: Sequence[Study],
        seeds: Sequence[int], folds: Sequence[int] | None = None, *,
        quick: bool = False) -> dict:
  """Runs the studies in order; returns study name -> `run_study`'s result."""
  experiment.validate_config(config)
  distinct = {v.key for study in studies for v in study.variants}
  logging.info('ablation in %s: %d studies, %d distinct runs x %d seeds x %s folds',
               workdir, len(studies), len(distinct), len(seeds),
               'all' if folds is None else len(folds))
  return {study.name: run_study(config, workdir, study, seeds, folds, quick=quick)
          for study in studies}


@cli.exits_on_error
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  unknown = [name for name in FLAGS.study if name not in STUDIES]
  if unknown:
    raise ConfigError(f'--study: unknown studies {unknown} (known: {", ".join(STUDIES)})')
  quick = FLAGS.quick
  config = quick_config(FLAGS.config) if quick else FLAGS.config
  seeds = cli.indices(FLAGS.seeds or (QUICK_SEEDS if quick else DEFAULT_SEEDS), '--seeds')
  folds = FLAGS.folds or (QUICK_FOLDS if quick else None)
  folds = None if folds is None else cli.indices(folds, '--folds')
  experiment.ensure_writable(FLAGS.workdir, 'the ablation workdir (--workdir)')
  results = run(config, FLAGS.workdir, [STUDIES[n] for n in FLAGS.study],
                seeds, folds, quick=quick)
  for name, result in results.items():
    print(f'{name}: {os.path.join(FLAGS.workdir, name, "results.md")}')
    for row in result['rows']:
      print(f'  {row["variant"]:<26} UA {row["ua_mean"]:6.2f} ± {row["ua_std"]:5.2f}'
            f'  WA {row["wa_mean"]:6.2f} ± {row["wa_std"]:5.2f}'
            f'  paper UA {_fmt(row["paper_ua"]) or "-":>6}'
            f'  compactness {row["compactness_mean"]:.3f}')


if __name__ == '__main__':
  define_flags()
  app.run(main)
