"""Generative augmentation of every run of a cross-validation, summarised.

  python -m jaxser.augment --crossval=/tmp/cv [--config=demo:quick --config.augment.ratio=2]

`run_all` runs `jaxser.augment.run` on each finished run of a crossval
workdir (`seed*/fold*/`) with one set of settings, reusing a run's results
when they were made with the same settings from the same run (its identity
and selected step), and writes `<crossval>/augment_ratio<r>.json` and `.md`:
per variant the mean and std of test UA, WA and macro-F1, the UA gain over
no augmentation and over the run's own FC2, paired by run, and the
generators' mean MI bound and the runs' FC2 accuracy on their vectors.
"""

import glob
import json
import os

from absl import logging
import ml_collections
import numpy as np

from jaxser import augment
from jaxser import evaluate
from jaxser import fileio
from jaxser import report
from jaxser.errors import JaxserError

__all__ = ['markdown', 'run_all']


def run_all(root: str, config: ml_collections.ConfigDict | None = None) -> dict:
  """`run` on every finished run of a crossval workdir; a paired summary.

  A run's results are reused when they were made with the same settings
  from the same run (its identity and selected step); otherwise it is
  augmented anew. Writes `<root>/augment_ratio<r>.json` and `.md`.

  Raises:
    JaxserError: no finished run under `root`.
  """
  dirs = sorted(os.path.dirname(p) for p in glob.glob(
      os.path.join(root, 'seed*', 'fold*', 'results.json')))
  if not dirs:
    raise JaxserError(f'{root}: no finished run (seed*/fold*/results.json) to augment')
  # One set of settings for every run: the config's, else the first run's.
  aug = augment.augment_config(dirs[0], None if config is not None else
                        evaluate.restore_selected(dirs[0])[0], config)
  config = ml_collections.ConfigDict({'augment': aug.to_dict()})
  per_run = []
  for number, fold_dir in enumerate(dirs, 1):
    path = os.path.join(augment.output_dir(fold_dir, aug), 'results.json')
    saved = None
    if os.path.exists(path):
      with open(path) as f:
        saved = json.load(f)
    if saved and saved.get('settings') == aug.to_dict() and saved.get('source') == augment.source(fold_dir):
      logging.info('augment %d of %d: %s reused', number, len(dirs), path)
      per_run.append(saved)
    else:
      logging.info('augment %d of %d: %s', number, len(dirs), fold_dir)
      per_run.append(augment.run(fold_dir, config))
  summary = {**_summary(per_run), 'settings': aug.to_dict()}
  name = f'augment_ratio{aug.ratio:g}'
  fileio.write_json(os.path.join(root, name + '.json'), summary)
  fileio.atomic_write(os.path.join(root, name + '.md'), markdown(summary))
  return summary


def _summary(per_run: list) -> dict:
  """Mean ± std per variant and gains over `none` and `before`, paired by run."""
  out = {'runs': len(per_run), 'variants': {}, 'generators': {}}
  before = {m: [r['before'][m] for r in per_run] for m in ('ua', 'wa', 'f1')}
  for variant in per_run[0]['variants']:
    values = {m: [r['variants'][variant][m] for r in per_run] for m in ('ua', 'wa', 'f1')}
    out['variants'][variant] = {
        **{m: {'mean': float(np.mean(v)), 'std': float(np.std(v))} for m, v in values.items()},
        'gain_over_none': _paired(values['ua'], [
            r['variants']['none']['ua'] for r in per_run]) if variant != 'none' else None,
        'gain_over_before': _paired(values['ua'], before['ua'])}
  for variant in per_run[0]['generators']:
    g = [r['generators'][variant] for r in per_run]
    out['generators'][variant] = {
        k: float(np.mean([x[k] for x in g])) for k in ('mi_bound', 'real_classifier_accuracy')}
  out['before'] = {m: {'mean': float(np.mean(v)), 'std': float(np.std(v))}
                   for m, v in before.items()}
  return out


def _paired(after, before) -> dict:
  """`report.paired_stats` of `after - before`, JSON-ready (None for NaN)."""
  stats = report.paired_stats(np.subtract(after, before))
  return {k: None if isinstance(v, float) and not np.isfinite(v) else v
          for k, v in stats.items()}


def markdown(summary: dict) -> str:
  """The summary as a table (percent; gains in UA points, paired by run)."""
  pct = lambda s: f'{100 * s["mean"]:.2f} ± {100 * s["std"]:.2f}'
  lines = [f'# Augmentation of {summary["runs"]} runs, ratio '
           f'{summary["settings"]["ratio"]:g}', '',
           '| variant | UA % | WA % | macro-F1 % | UA gain over none | better | t |',
           '|---|---:|---:|---:|---:|---:|---:|',
           f'| before (the run\'s FC2) | {pct(summary["before"]["ua"])} | '
           f'{pct(summary["before"]["wa"])} | {pct(summary["before"]["f1"])} | | | |']
  for name, v in summary['variants'].items():
    gain = v['gain_over_none']
    tail = ('| | | |' if gain is None else
            f'| {100 * gain["mean"]:+.2f} | {gain["better"]} of {gain["n"]} | '
            f'{"-" if gain["t"] is None else format(gain["t"], ".2f")} |')
    lines.append(f'| {name} | {pct(v["ua"])} | {pct(v["wa"])} | {pct(v["f1"])} {tail}')
  lines += ['', '| generator | MI bound (nats) | the run\'s FC2 on its vectors |',
            '|---|---:|---:|']
  lines += [f'| {n} | {g["mi_bound"]:.3f} | {100 * g["real_classifier_accuracy"]:.1f} % |'
            for n, g in summary['generators'].items()]
  return '\n'.join(lines) + '\n'
