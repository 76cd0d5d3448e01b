"""A study's report: results.csv, results.md and the figures, in its folder.

`jaxser.ablate` runs the variants and builds one `variant_row` each from the
variant's crossval summary (`report.fold_summary`) and the compactness of its
test embeddings; `write` then writes the table beside the paper's numbers
(`jaxser.studies`) as CSV and Markdown, with a line for each claim of the
paper the rows can test (the centre loss' gain and compactness, the best
lambda, alpha's spread), the confusion matrices beside the paper's Tables
1-2, and the figures (`plots.ua_wa_bars`, `plots.ua_wa_curve`,
`plots.embeddings_pca`, `plots.confusion`).
"""

import csv
import json
import math
import os
from typing import Mapping, Sequence

from absl import logging
import numpy as np

from jaxser import provenance
from jaxser import report
from jaxser import studies

__all__ = ['markdown', 'sweep', 'variant_row', 'write', 'write_csv']


def _pct(value):
  return None if value is None else 100 * value


def variant_row(study: studies.Study, variant: studies.Variant,
                summary: Mapping, compact: Sequence[float]) -> dict:
  """The study table's row of a variant (percentages, as the paper's).

  Args:
    study: the variant's study.
    variant: the variant.
    summary: its crossval summary (`report.fold_summary`).
    compact: the `report.compactness` of each run's test embeddings.

  Returns:
    The row, a flat dict: what the CSV holds and what the Markdown, the
    claims and `plots.ua_wa_bars`/`plots.ua_wa_curve` read; UA and WA in %,
    the paper's None where it does not report them.
  """
  paper = studies.paper_result(variant)
  return {
      'study': study.name, 'variant': variant.name, 'run': variant.key,
      'features': variant.kind, 'lambda': variant.lam, 'alpha': variant.alpha,
      'reading': variant.reading,
      'runs': summary['num_folds'],
      'ua_mean': _pct(summary['ua']['mean']), 'ua_std': _pct(summary['ua']['std']),
      'wa_mean': _pct(summary['wa']['mean']), 'wa_std': _pct(summary['wa']['std']),
      'f1_mean': _pct(summary['f1']['mean']), 'f1_std': _pct(summary['f1']['std']),
      'paper_setting': paper.setting if paper else '',
      'paper_ua': paper.ua if paper else None,
      'paper_wa': paper.wa if paper else None,
      'compactness_mean': float(np.mean(compact)),
      'compactness_std': float(np.std(compact)),
  }


def _fmt(value, digits=2):
  return '' if value is None else f'{value:.{digits}f}'


def write_csv(rows: Sequence[dict], path: str) -> str:
  """Writes the rows (`variant_row`) as CSV, floats to 4 decimals; returns `path`."""
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
      writer.writerow({k: ('' if v is None else round(v, 4) if isinstance(v, float)
                           else v) for k, v in row.items()})
  return path


def _paired_text(stats, what='better') -> str:
  """'std 9.40 over 15 pairs, better in 10, t = 1.49' (points)."""
  return (f'std {100 * stats["std"]:.2f} over {stats["n"]} pairs, {what} in '
          f'{stats["better"]}, t = {stats["t"]:.2f}')


def _gain_lines(rows, summaries):
  """Measured vs paper gain of lambda 0.3 (alpha 0.5) over lambda 0, per input.

  One pair of lines per input and reading; the gain is paired by (seed,
  fold) when both variants ran the same runs.
  """
  lines = []
  for kind, reading in dict.fromkeys((r['features'], r['reading']) for r in rows):
    same = [r for r in rows if r['features'] == kind and r['reading'] == reading]
    base = [r for r in same if r['lambda'] == 0]
    center = [r for r in same if r['lambda'] == 0.3 and r['alpha'] == 0.5]
    if not (base and center):
      continue
    base, center = base[0], center[0]
    parts = []
    for metric in ('ua', 'wa'):
      measured = center[f'{metric}_mean'] - base[f'{metric}_mean']
      paper = ((center[f'paper_{metric}'] or math.nan) -
               (base[f'paper_{metric}'] or math.nan))
      text = f'{metric.upper()} {measured:+.2f} points (paper {paper:+.2f}'
      try:
        text += '; paired: ' + _paired_text(report.paired_difference(
            summaries[center['variant']], summaries[base['variant']], metric))
      except ValueError:  # not the same runs: the means only
        pass
      parts.append(text + ')')
    label = kind if reading == 'written' else f'{kind}, as run'
    lines.append(f'- Centre loss on {label} input (lambda 0.3 vs 0): '
                 f'{", ".join(parts)}; same sign as the paper: '
                 f'{"yes" if center["ua_mean"] > base["ua_mean"] else "no"} (UA).')
    with_c, without = center['compactness_mean'], base['compactness_mean']
    ratio = f'ratio {with_c / without:.2f}; ' if without > 0 else ''
    lines.append(f'- Compactness of the {label} test embeddings: {with_c:.3f} '
                 f'with the centre loss vs {without:.3f} without ({ratio}the '
                 "paper's Figure 4: more compact with it; here: "
                 f'{"yes" if with_c < without else "no"}).')
  return lines


def _reading_lines(rows, summaries):
  """As run against as written: per configuration, and the centre loss' gain."""
  lines, gains = [], {}
  for run in (r for r in rows if r['reading'] == 'run'):
    written = [r for r in rows if r['reading'] == 'written' and all(
        r[k] == run[k] for k in ('features', 'lambda', 'alpha'))]
    if not written:
      continue
    after, before = summaries[run['variant']], summaries[written[0]['variant']]
    try:
      stats = report.paired_difference(after, before)
    except ValueError:
      continue
    lines.append(f'- As run minus as written, {run["features"]} lambda '
                 f'{run["lambda"]:g}: UA {100 * stats["mean"]:+.2f} points '
                 f'({_paired_text(stats, "higher as run")}).')
    gains.setdefault(run['features'], {})[run['lambda']] = (after, before)
  for kind, pair in gains.items():
    if 0 not in pair or 0.3 not in pair:
      continue
    values = [report.run_values(s) for s in (*pair[0.3], *pair[0])]
    keys = set.intersection(*(set(v) for v in values))
    # (as run gain) - (as written gain), per (seed, fold).
    stats = report.paired_stats((values[0][k] - values[2][k]) - (values[1][k] - values[3][k])
                                for k in sorted(keys, key=str))
    lines.append(f'- The centre loss\' UA gain (lambda 0.3 minus 0), as run '
                 f'minus as written, {kind}: {100 * stats["mean"]:+.2f} points '
                 f'({_paired_text(stats, "larger as run")}).')
  return lines


def sweep(rows: Sequence[dict], field: str) -> list[dict] | None:
  """The rows sorted by `field` if they differ in it alone (2+ values), else None."""
  others = {'lambda': 'alpha', 'alpha': 'lambda'}[field]
  if len({(r['features'], r[others], r.get('reading')) for r in rows}) != 1:
    return None
  if len({r[field] for r in rows}) < 2:
    return None
  return sorted(rows, key=lambda r: r[field])


def _spread(rows, key):
  values = [r[key] for r in rows if r[key] is not None]
  return max(values) - min(values) if values else math.nan


def _claim_lines(rows, summaries):
  """One line per claim of the paper that the study's rows can test."""
  lines = _gain_lines(rows, summaries) + _reading_lines(rows, summaries)
  by_lambda = sweep(rows, 'lambda')
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
  by_alpha = sweep(rows, 'alpha')
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
  show_paper = (paper is not None and paper.confusion
                and tuple(names) == studies.PAPER_CLASSES)
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
          + (' (`--quick`: a CPU size, see `jaxser/configs/demo.py:quick`)' if quick else '')
          + ". The paper's numbers are IEMOCAP under its own protocol "
          '(docs/method.md, "Reported numbers"): compare trends, not values. '
          + _made_by())


def _made_by() -> str:
  """Which code and libraries wrote the report (each run's results.json has more)."""
  v = provenance.versions()
  return (f'Written by jaxser {v["jaxser"]} (commit {provenance.git_commit() or "unknown"}), '
          f'jax {v["jax"]}, flax {v["flax"]}, optax {v["optax"]}, on '
          f'{", ".join(sorted(set(d.split(" ", 1)[1] for d in provenance.devices())))}.')


def markdown(study: studies.Study, rows, summaries, figures, config, seeds,
             folds, quick=False, sections=()) -> str:
  """The study's results.md.

  Args:
    study: the study.
    rows: its rows (`variant_row`), in the study's order.
    summaries: variant name -> its crossval summary (`report.fold_summary`).
    figures: (caption, path) of each figure, in the order to show.
    config: the base config the variants were run with.
    seeds: the seeds.
    folds: the folds; None for all of the protocol's.
    quick: whether `config` is a `--quick` one.
    sections: more Markdown lines, after the claims (the augmentation's).

  Returns:
    The Markdown text.
  """
  header = ('variant', 'input', 'λ', 'α', 'runs', 'UA %', 'WA %', 'macro-F1 %',
            'paper UA %', 'paper WA %', 'compactness')
  lines = [f'# Study `{study.name}`: {study.title}', '',
           _setup_line(config, seeds, folds, quick), '',
           '| ' + ' | '.join(header) + ' |', '|---|---|---:|---:|' + '---:|' * 7]
  for r in rows:
    setting = f' (setting {r["paper_setting"]})' if r['paper_setting'] else ''
    lines.append(
        f'| `{r["variant"]}`{setting} | {r["features"]}'
        f'{" as run" if r["reading"] == "run" else ""} | {r["lambda"]:g} | '
        f'{r["alpha"]:g} | {r["runs"]} | {r["ua_mean"]:.2f} ± {r["ua_std"]:.2f} | '
        f'{r["wa_mean"]:.2f} ± {r["wa_std"]:.2f} | '
        f'{r["f1_mean"]:.2f} ± {r["f1_std"]:.2f} | {_fmt(r["paper_ua"])} | '
        f'{_fmt(r["paper_wa"])} | {r["compactness_mean"]:.3f} ± '
        f'{r["compactness_std"]:.3f} |')
  lines += ['', '± is the population standard deviation over the runs (every '
            'seed and fold). Compactness: the mean distance of a test embedding '
            'z to its class mean over the mean distance between the class means '
            '(`report.compactness`; lower is more compact), per run, then mean '
            '± std.', '']
  claims = _claim_lines(rows, summaries)
  if claims:
    lines += ["## The paper's claims, measured", ''] + claims + ['']
  lines += list(sections)
  lines += ['## Confusion matrices (Tables 1-2)', '',
            'Row-normalised test confusion, the mean over the runs of each '
            "run's row-normalised matrix (the figures show the summed counts).", '']
  for variant in study.variants:
    lines += _confusion_lines(variant.name, summaries[variant.name],
                              studies.paper_result(variant))
  lines += ['## Figures', '']
  for caption, path in figures:
    name = os.path.basename(path)
    lines += [f'{caption}:', '', f'![{name}]({name})', '']
  return '\n'.join(lines)


def _figures(study, study_dir, rows, summaries, first_runs) -> list[tuple[str, str]]:
  """The study's figures in `study_dir`: (caption, path) of each."""
  from jaxser import plots  # pylint: disable=g-import-not-at-top (matplotlib is slow to import)
  figures = [('UA and WA per variant, the paper\'s as markers (Figure 5)',
              plots.ua_wa_bars(rows, os.path.join(study_dir, 'ua_wa_bars.png'),
                               title=study.title))]
  for field in ('lambda', 'alpha'):
    swept = sweep(rows, field)
    if swept:
      path = os.path.join(study_dir, f'ua_wa_vs_{field}.png')
      figures.append((f'UA and WA against {field} (Figure 3)',
                      plots.ua_wa_curve(swept, field, path, title=study.title)))
  figures += _figure4s(study, study_dir, rows, summaries, first_runs)
  for variant in study.variants:
    fold_dir, compact, both = first_runs[variant.name]
    classes = summaries[variant.name]['class_names']
    path = os.path.join(study_dir, f'pca_{variant.name}.png')
    figures.append((f'`{variant.name}`: PCA of the embeddings, '
                    f'{os.path.relpath(fold_dir, os.path.dirname(study_dir))} '
                    '(Figure 4)', plots.embeddings_pca(
                        both['train']['z'], both['train']['labels'],
                        both['test']['z'], both['test']['labels'], classes, path,
                        title=f'{variant.name}, {_run_name(fold_dir)}: test compactness '
                              f'{compact:.3f}', centers=both['train']['centers'])))
  for variant in study.variants:
    summary = summaries[variant.name]
    path = os.path.join(study_dir, f'confusion_{variant.name}.png')
    figures.append((f'`{variant.name}`: test confusion (Tables 1-2)', plots.confusion(
        np.asarray(summary['confusion_counts']), summary['class_names'], path,
        title=f'{variant.name}: summed over {summary["num_folds"]} runs, row-normalised')))
  return figures


def _run_name(fold_dir: str) -> str:
  """'seed0/fold3 (Ses02_test_Ses02F)': where a figure's run is."""
  results = {}
  path = os.path.join(fold_dir, 'results.json')
  if os.path.exists(path):
    with open(path) as f:
      results = json.load(f)
  where = '/'.join(fold_dir.rstrip('/').split('/')[-2:])
  return f'{where} ({results["fold"]})' if 'fold' in results else where


def _figure4s(study, study_dir, rows, summaries, first_runs) -> list[tuple[str, str]]:
  """The paper's Figure 4 per input and reading: settings 1 and 2 side by side."""
  from jaxser import plots  # pylint: disable=g-import-not-at-top (matplotlib is slow to import)
  out = []
  for kind, reading in dict.fromkeys((r['features'], r['reading']) for r in rows):
    pair = [next((r for r in rows if r['features'] == kind and r['reading'] == reading
                  and r['lambda'] == lam and (lam == 0 or r['alpha'] == 0.5)), None)
            for lam in (0.0, 0.3)]
    if None in pair:
      continue
    panels = []
    for row in pair:
      fold_dir, compact, both = first_runs[row['variant']]
      panels.append({'train_z': both['train']['z'], 'test_z': both['test']['z'],
                     'test_labels': both['test']['labels'],
                     'centers': both['train']['centers'],
                     'title': f'λ {row["lambda"]:g}: test UA {both["test"]["ua"] * 100:.1f} %, '
                              f'compactness {compact:.3f}'})
    name = f'figure4_{kind}{"_as_run" if reading == "run" else ""}.png'
    where = _run_name(first_runs[pair[0]['variant']][0])
    out.append((f'Figure 4 ({kind}{", as run" if reading == "run" else ""}): test '
                'embeddings without and with the centre loss, each on its own '
                'training PCA axes, shared limits', plots.figure4(
                    panels, summaries[pair[0]['variant']]['class_names'],
                    os.path.join(study_dir, name),
                    title=f'{kind} test embeddings, {where}: without (left) and with '
                          '(right) the centre loss')))
  return out


def write(study: studies.Study, study_dir: str, rows, summaries, first_runs,
          config, seeds, folds, *, quick=False, sections=()) -> list[str]:
  """results.csv, the figures and results.md in `study_dir`; their paths.

  Args:
    study: the study.
    study_dir: where to write.
    rows: its rows (`variant_row`), in the study's order.
    summaries: variant name -> its crossval summary (`report.fold_summary`).
    first_runs: variant name -> (folder, test compactness, embeddings) of its
      first run, the embeddings as `evaluate.run_embeddings(folder, ('train',
      'test'))` returns them: the PCA figure shows that run.
    config: the base config the variants were run with.
    seeds: the seeds.
    folds: the folds; None for all of the protocol's.
    quick: whether `config` is a `--quick` one.
    sections: more Markdown lines for results.md, after the claims.

  Returns:
    The paths written: results.csv, results.md, then the figures.
  """
  figures = _figures(study, study_dir, rows, summaries, first_runs)
  files = [write_csv(rows, os.path.join(study_dir, 'results.csv'))]
  md_path = os.path.join(study_dir, 'results.md')
  with open(md_path, 'w') as f:
    f.write(markdown(study, rows, summaries, figures, config, seeds, folds, quick,
                     sections))
  logging.info('study %s: wrote %s', study.name, md_path)
  return files + [md_path] + [path for _, path in figures]
