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
from typing import Sequence

from absl import logging
import ml_collections
import numpy as np

from jaxser import augment
from jaxser import evaluate
from jaxser import fileio
from jaxser import report
from jaxser.errors import JaxserError

__all__ = ['augment_runs', 'markdown', 'run_all', 'study_lines', 'study_section']


def run_all(root: str, config: ml_collections.ConfigDict | None = None) -> dict:
  """`augment_runs` on every finished run of a crossval workdir, written.

  Writes `<root>/augment_ratio<r>.json` and `.md`.

  Raises:
    JaxserError: no finished run under `root`.
  """
  dirs = sorted(os.path.dirname(p) for p in glob.glob(
      os.path.join(root, 'seed*', 'fold*', 'results.json')))
  if not dirs:
    raise JaxserError(f'{root}: no finished run (seed*/fold*/results.json) to augment')
  summary = augment_runs(dirs, config, root=root)
  name = f'augment_ratio{summary["settings"]["ratio"]:g}'
  fileio.write_json(os.path.join(root, name + '.json'), summary)
  fileio.atomic_write(os.path.join(root, name + '.md'), markdown(summary))
  return summary


def augment_runs(dirs: Sequence[str], config: ml_collections.ConfigDict | None = None,
                 *, root: str | None = None) -> dict:
  """`augment.run` on each run of `dirs` with one set of settings; a summary.

  The settings are `config.augment` (else the first run's own). A run's
  results are reused when they were made with the same settings from the
  same run (its identity and selected step); otherwise it is augmented anew.

  Args:
    dirs: finished run workdirs (`seed<s>/fold<k>/`).
    config: a config whose `augment` fields to use.
    root: what the summary names the runs relative to (default: the first
      run's `<root>/seed<s>/fold<k>`).

  Returns:
    Mean and std per variant, gains paired by run, the generators' judging,
    the per-run test UAs (`ua_per_run`, in the order of `run_names`).
  """
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
  root = root or os.path.dirname(os.path.dirname(dirs[0]))  # <root>/seed<s>/fold<k>
  return {**_summary(per_run), 'settings': aug.to_dict(),
          'run_names': [os.path.relpath(d, root) for d in dirs]}


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
  out['ua_per_run'] = {'before': before['ua'], **{
      variant: [r['variants'][variant]['ua'] for r in per_run]
      for variant in per_run[0]['variants']}}
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


def _gain_cell(gain: dict | None, bold: bool = False) -> str:
  if gain is None:
    return '-'
  t = '-' if gain['t'] is None else format(gain['t'], '.2f')
  mean = f'{100 * gain["mean"]:+.2f}'
  return f'{f"**{mean}**" if bold else mean} ({gain["better"]} of {gain["n"]}, t = {t})'


def study_lines(summaries: dict, lambdas: dict) -> list[str]:
  """The augmentation section of a study's results.md.

  Args:
    summaries: variant name -> ratio -> `augment_runs`' summary.
    lambdas: variant name -> its centre-loss weight.

  Returns:
    Markdown lines: the gains over `none` per run and ratio, the generators,
    and the centre loss' effect on the MI-regularised augmentation, paired
    by run, where the study has runs with and without it.
  """
  first = next(iter(next(iter(summaries.values())).values()))
  variants = list(first['variants'])
  gains = [v for v in variants if v != 'none']
  lines = ['## Generative augmentation (Ahn et al. 2025)', '',
           f'`jaxser.augment` on every run: {first["settings"]["gan_steps"]} GAN updates, '
           f'FC2 trained again for {first["settings"]["head_steps"]} updates from the '
           "run's own (the CRNN and FC1 frozen), selected by dev UA. `none` is FC2 "
           'trained again on the real vectors alone: the baseline. Gains in UA points '
           'over `none`, paired by run (better in how many, t).', '',
           '| run | ratio | none UA % | ' + ' | '.join(gains) + ' |',
           '|---|---:|---:|' + '---:|' * len(gains)]
  for name, by_ratio in summaries.items():
    for ratio, summary in by_ratio.items():
      none = summary['variants']['none']['ua']
      cells = [_gain_cell(summary['variants'][v]['gain_over_none'], v == 'gan_mi')
               for v in gains]
      lines.append(f'| `{name}` (λ {lambdas[name]:g}) | {ratio:g} | {100 * none["mean"]:.2f} '
                   f'± {100 * none["std"]:.2f} | ' + ' | '.join(cells) + ' |')
  lines += ['', 'The generators, judged on 250 vectors of each class (mean over the runs; '
            'a generator is trained the same way whatever the ratio, so a ratio whose '
            'generators equal an earlier one\'s is not repeated):', '',
            "| run | ratio | generator | MI bound (nats) | the run's FC2 on its vectors |",
            '|---|---:|---|---:|---:|']
  for name, by_ratio in summaries.items():
    shown = []
    for ratio, summary in by_ratio.items():
      if summary['generators'] in shown:
        continue
      shown.append(summary['generators'])
      lines += [f'| `{name}` | {ratio:g} | {g} | {v["mi_bound"]:.3f} | '
                f'{100 * v["real_classifier_accuracy"]:.1f} % |'
                for g, v in summary['generators'].items()]
  return lines + [''] + _together_lines(summaries, lambdas)


def _together_lines(summaries: dict, lambdas: dict) -> list[str]:
  """The centre loss' effect on each variant's gain, paired by run (seed, fold)."""
  without = [n for n in summaries if lambdas[n] == 0]
  with_ = [n for n in summaries if lambdas[n] > 0]
  if not without or not with_:
    return []
  lines = ['Centre loss and augmentation together: the gain over `none` with the '
           'centre loss minus the gain without it, paired by seed and fold:', '']
  for ratio in summaries[with_[0]]:
    a, b = summaries[with_[0]][ratio], summaries[without[0]].get(ratio)
    if b is None:
      continue
    pairs = sorted(set(a['run_names']) & set(b['run_names']))
    for variant in [v for v in a['variants'] if v != 'none']:
      diff = [_run_gain(a, variant, r) - _run_gain(b, variant, r) for r in pairs]
      stats = _paired(diff, np.zeros(len(diff)))
      generator = ''
      if variant in a['generators'] and variant in b['generators']:
        generator = (f'; MI bound {a["generators"][variant]["mi_bound"]:.3f} against '
                     f'{b["generators"][variant]["mi_bound"]:.3f} nats')
      lines.append(f'- ratio {ratio:g}, {variant}: {_gain_cell(stats)}{generator}')
  return lines + ['']


def _run_gain(summary: dict, variant: str, run_name: str) -> float:
  i = summary['run_names'].index(run_name)
  return summary['ua_per_run'][variant][i] - summary['ua_per_run']['none'][i]


def study_section(runs: dict, ratios: Sequence[float], study_dir: str):
  """`augment_runs` on every run of a study's variants at each ratio.

  Args:
    runs: variant name -> (its finished run dirs, its config, its lambda);
      the variant's folder in `study_dir` links to the dirs' root.
    ratios: the synthetic-to-real ratios.
    study_dir: where `augment.json` goes.

  Returns:
    (results.md's lines: `study_lines` and a run's figure per variant,
    variant name -> ratio -> summary). Writes `<study_dir>/augment.json`.
  """
  augmented = {}
  for name, (dirs, config, _) in runs.items():
    for ratio in ratios:
      with_ratio = config.copy_and_resolve_references()
      with_ratio.augment.ratio = float(ratio)
      logging.info('%s: augmentation at ratio %g', name, ratio)
      augmented.setdefault(name, {})[ratio] = augment_runs(dirs, with_ratio)
  fileio.write_json(os.path.join(study_dir, 'augment.json'), {
      name: {f'{r:g}': s for r, s in by_ratio.items()} for name, by_ratio in augmented.items()})
  lines = study_lines(augmented, {name: lam for name, (_, _, lam) in runs.items()})
  for name, (dirs, _, _) in runs.items():
    figure = os.path.join(name, os.path.relpath(dirs[0], os.path.dirname(os.path.dirname(
        dirs[0]))), 'augment', f'ratio{ratios[0]:g}', 'real_and_generated.png')
    if os.path.exists(os.path.join(study_dir, figure)):
      lines += [f'`{name}`, ratio {ratios[0]:g}: real and generated vectors of one run:',
                '', f'![real and generated]({figure})', '']
  return lines, augmented
