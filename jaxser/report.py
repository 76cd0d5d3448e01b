"""Cross-validation summaries: UA/WA per fold, mean and std, the averaged
row-normalised confusion matrix, as JSON-ready dicts and Markdown; and the
compactness number behind the paper's Figure 4.

Standard deviations are population ones (ddof=0): the spread of the folds
that were run, not an estimate for unseen folds. The averaged confusion
matrix is the mean of the folds' row-normalised matrices, as the paper
reports it, not the normalised sum of their counts (that sum is kept too).
"""

import numbers
from typing import Mapping, Sequence

import numpy as np

from jaxser import metrics

__all__ = ['compactness', 'fold_summary', 'markdown_table', 'paired_difference',
           'paired_stats', 'run_values']


def _averaged_confusion(counts: np.ndarray) -> np.ndarray:
  """`[C, C]` mean of the row-normalised `[folds, C, C]` counts.

  A row is averaged over the folds that have examples of its class, so a
  fold without a class does not pull that row towards zero; a class absent
  from every fold gives a zero row.
  """
  normalised = np.stack([np.asarray(metrics.row_normalise(c), np.float64)
                         for c in counts])
  present = counts.sum(axis=2) > 0  # [folds, C]
  folds_with = present.sum(axis=0)[:, None]  # [C, 1]
  total = np.sum(normalised * present[:, :, None], axis=0)
  return total / np.maximum(folds_with, 1)


def _plain(value):
  """NumPy integers as Python ints, so the summary stays JSON-ready."""
  return int(value) if isinstance(value, numbers.Integral) else value


def _mean_std(values) -> dict[str, float]:
  values = np.asarray(values, np.float64)
  return {'mean': float(values.mean()), 'std': float(values.std(ddof=0))}


def fold_summary(fold_results: Sequence[Mapping],
                 class_names: Sequence[str]) -> dict:
  """Summarises a cross-validation run (all folds of one or more seeds).

  Args:
    fold_results: one dict per fold and seed, each with 'fold' (its name),
      'seed', 'ua' and 'wa' (fractions) and 'confusion' (`[C, C]` test
      counts, rows = true classes).
    class_names: the C class names.

  Returns:
    A JSON-ready dict: 'class_names'; 'folds' (one row per result: fold,
    seed, ua, wa, f1 (macro-F1 of its confusion), confusion); 'num_folds';
    'ua', 'wa' and 'f1', each {'mean',
    'std'} over all rows with the population std (ddof=0), which 'std_ddof'
    records; 'seeds' (the mean UA and WA of each seed, in order of first
    appearance); 'confusion' (`[C, C]` average of the folds' row-normalised
    matrices) and 'confusion_counts' (`[C, C]` summed counts).

  Raises:
    ValueError: no results, or a confusion matrix of the wrong shape.
  """
  if not fold_results:
    raise ValueError('fold_summary needs at least one fold result')
  num = len(class_names)
  counts = np.stack([np.asarray(r['confusion'], np.int64) for r in fold_results])
  if counts.shape[1:] != (num, num):
    raise ValueError(f'confusion matrices have shape {counts.shape[1:]}, '
                     f'expected ({num}, {num}) for classes {list(class_names)}')
  # Macro-F1 from each run's counts (so summaries of older runs have it too).
  rows = [{'fold': str(r['fold']), 'seed': _plain(r['seed']), 'ua': float(r['ua']),
           'wa': float(r['wa']), 'f1': float(metrics.macro_f1(c)), 'confusion': c.tolist()}
          for r, c in zip(fold_results, counts)]
  seeds = list(dict.fromkeys(row['seed'] for row in rows))
  return {
      'class_names': list(class_names),
      'folds': rows,
      'num_folds': len(rows),
      'ua': _mean_std([row['ua'] for row in rows]),
      'wa': _mean_std([row['wa'] for row in rows]),
      'f1': _mean_std([row['f1'] for row in rows]),
      'std_ddof': 0,
      'seeds': [{'seed': seed,
                 'ua': float(np.mean([r['ua'] for r in rows if r['seed'] == seed])),
                 'wa': float(np.mean([r['wa'] for r in rows if r['seed'] == seed])),
                 'f1': float(np.mean([r['f1'] for r in rows if r['seed'] == seed]))}
                for seed in seeds],
      'confusion': _averaged_confusion(counts).tolist(),
      'confusion_counts': counts.sum(axis=0).tolist(),
  }


def run_values(summary: Mapping, metric: str = 'ua') -> dict[tuple, float]:
  """`{(seed, fold name): value}` of one metric over a summary's runs."""
  return {(row['seed'], row['fold']): float(row[metric]) for row in summary['folds']}


def paired_stats(differences) -> dict[str, float]:
  """Mean, sample std (ddof=1), count, wins and t of paired differences.

  Returns:
    {'n', 'mean', 'std', 'better' (how many are > 0), 't' (mean over the
    standard error, NaN under two pairs or a zero std)}.
  """
  d = np.asarray(list(differences), np.float64)
  std = float(d.std(ddof=1)) if len(d) > 1 else float('nan')
  t = float(d.mean() / (std / np.sqrt(len(d)))) if len(d) > 1 and std > 0 else float('nan')
  return {'n': len(d), 'mean': float(d.mean()), 'std': std,
          'better': int(np.sum(d > 0)), 't': t}


def paired_difference(after: Mapping, before: Mapping, metric: str = 'ua') -> dict:
  """`paired_stats` of `after - before`, paired by (seed, fold).

  Args:
    after, before: two `fold_summary`s over the same seeds and folds.
    metric: 'ua' or 'wa'.

  Raises:
    ValueError: the two summaries do not hold the same (seed, fold) runs.
  """
  a, b = run_values(after, metric), run_values(before, metric)
  if set(a) != set(b):
    raise ValueError(f'paired_difference: the runs differ: {sorted(set(a) ^ set(b))[:4]}')
  return paired_stats(a[key] - b[key] for key in sorted(a, key=str))


def _cell(text) -> str:
  return str(text).replace('|', '\\|')


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
  """Markdown table lines; the first column left-aligned, the rest right."""
  lines = ['| ' + ' | '.join(map(_cell, header)) + ' |',
           '|---|' + '---:|' * (len(header) - 1)]
  lines.extend('| ' + ' | '.join(map(_cell, row)) + ' |' for row in rows)
  return lines


def markdown_table(summary: Mapping) -> str:
  """A `fold_summary` as Markdown.

  UA/WA per fold in percent (2 decimals) with a final 'mean ± std' row, the
  seed means when there are several seeds, then the averaged row-normalised
  confusion matrix (3 decimals, as the paper's Tables 1-2).

  Args:
    summary: what `fold_summary` returned (or its JSON, read back).

  Returns:
    The Markdown text, ending with a newline.
  """
  def pct(value):
    return f'{100 * value:.2f}'

  def pct_pm(stats):
    return f'{pct(stats["mean"])} ± {pct(stats["std"])}'

  folds = [(r['fold'], r['seed'], pct(r['ua']), pct(r['wa']), pct(r['f1']))
           for r in summary['folds']]
  folds.append(('mean ± std', '', pct_pm(summary['ua']), pct_pm(summary['wa']),
                pct_pm(summary['f1'])))
  lines = _table(('fold', 'seed', 'UA %', 'WA %', 'macro-F1 %'), folds)
  lines += ['', f'± is the population standard deviation (ddof='
            f'{summary["std_ddof"]}) over the {summary["num_folds"]} runs '
            f'(every fold of every seed).']
  if 'split_seed' in summary:  # crossval's: how the subsets were dealt
    lines += ['', 'Subsets dealt anew with each seed.'
              if summary['split_seed'] is None else
              f'Subsets dealt once (split seed {summary["split_seed"]}) for every seed.']
  if len(summary['seeds']) > 1:
    lines += [''] + _table(('seed', 'mean UA %', 'mean WA %', 'mean macro-F1 %'),
                           [(s['seed'], pct(s['ua']), pct(s['wa']), pct(s['f1']))
                            for s in summary['seeds']])
  names = summary['class_names']
  lines += ['', f'Averaged row-normalised confusion matrix (mean over the '
            f'{summary["num_folds"]} runs; rows: true class, columns: '
            f'predicted):', '']
  lines += _table(['true \\ predicted'] + list(names),
                  [[name] + [f'{v:.3f}' for v in row]
                   for name, row in zip(names, summary['confusion'])])
  return '\n'.join(lines) + '\n'


def compactness(z, labels) -> float:
  """How tight the classes are relative to how far apart they are.

  The mean Euclidean distance of each embedding to its class mean, divided
  by the mean Euclidean distance between the class means (over all pairs of
  the classes present). Smaller is more compact; the ratio does not change
  when the embeddings are scaled, translated or rotated.

  Args:
    z: `[n, d]` embeddings.
    labels: `[n]` class indices.

  Returns:
    The ratio, a Python float.

  Raises:
    ValueError: fewer than two classes present, or mismatched shapes.
  """
  z = np.asarray(z, np.float64)
  labels = np.asarray(labels)
  if z.ndim != 2 or labels.shape != (len(z),):
    raise ValueError(f'compactness needs [n, d] embeddings and [n] labels, '
                     f'got {z.shape} and {labels.shape}')
  classes, index = np.unique(labels, return_inverse=True)
  if len(classes) < 2:
    raise ValueError(f'compactness needs at least 2 classes, got {len(classes)}')
  means = np.stack([z[index == k].mean(axis=0) for k in range(len(classes))])
  intra = np.linalg.norm(z - means[index], axis=1).mean()
  first, second = np.triu_indices(len(classes), k=1)
  inter = np.linalg.norm(means[first] - means[second], axis=1).mean()
  return float(intra / inter)
