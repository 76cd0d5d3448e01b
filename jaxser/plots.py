"""PNG figures: confusion matrix, 2-D PCA of the embeddings, training curves,
and a study's UA/WA per variant and against lambda or alpha.

Every function takes the output path, writes one PNG there (creating its
folder) and returns the path. Figures are built as `matplotlib.figure.Figure`
objects rendered by the Agg canvas, never through `pyplot`: nothing is
registered with a GUI backend, nothing needs a display, and a figure is freed
as soon as the function returns.
"""

import json
import os
import pathlib
from typing import Mapping, Sequence

from absl import logging
import matplotlib
from matplotlib import figure as mpl_figure
import numpy as np

from jaxser import metrics

__all__ = ['confusion', 'embeddings_pca', 'pca_2d', 'run_plots', 'training_curves',
           'ua_wa_bars', 'ua_wa_curve']

_DPI = 120


def _save(fig: mpl_figure.Figure, path):
  """Writes `fig` to `path` as PNG and returns `path`."""
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(os.fspath(path), format='png', dpi=_DPI, bbox_inches='tight')
  fig.clear()
  logging.info('wrote %s', path)
  return path


def confusion(cm_counts, class_names: Sequence[str], path, *, title: str = ''):
  """The row-normalised confusion matrix as a heat map.

  Each cell shows its fraction of the row (3 decimals, as the paper's Tables
  1-2) and, below it, its count.

  Args:
    cm_counts: `[C, C]` counts, rows = true classes.
    class_names: the C class names.
    path: the PNG to write.
    title: the figure title.

  Returns:
    `path`.
  """
  counts = np.asarray(cm_counts)
  num = len(class_names)
  if counts.shape != (num, num):
    raise ValueError(f'confusion counts have shape {counts.shape}, expected '
                     f'({num}, {num}) for classes {list(class_names)}')
  fractions = np.asarray(metrics.row_normalise(counts))
  size = 1.2 + 0.9 * num
  fig = mpl_figure.Figure(figsize=(size + 1, size))
  ax = fig.add_subplot()
  image = ax.imshow(fractions, cmap='Blues', vmin=0, vmax=1)
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
  for (row, col), value in np.ndenumerate(fractions):
    ax.text(col, row, f'{value:.3f}\n({int(counts[row, col])})', ha='center',
            va='center', fontsize=8, color='white' if value > 0.5 else 'black')
  ax.set_xticks(range(num), class_names, rotation=45, ha='right')
  ax.set_yticks(range(num), class_names)
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  ax.set_title(title)
  return _save(fig, path)


def pca_2d(fit_z, *apply_z) -> tuple[np.ndarray, ...]:
  """Projects embeddings on the first two principal axes of `fit_z`.

  The axes come from the SVD of the centred `fit_z`; each axis' sign is fixed
  so that its largest loading is positive, so the picture is deterministic.
  Where `fit_z` has fewer than two directions the missing coordinates are 0.

  Args:
    fit_z: `[n, d]` embeddings that define the axes (the training set).
    *apply_z: more `[m, d]` arrays projected on the same axes (the test set).

  Returns:
    `([n, 2] fit_z projected, [m, 2] each apply_z projected ...)`.
  """
  fit_z = np.asarray(fit_z, np.float64)
  if fit_z.ndim != 2 or not len(fit_z):
    raise ValueError(f'pca_2d needs a non-empty [n, d] array, got {fit_z.shape}')
  mean = fit_z.mean(axis=0)
  _, _, vt = np.linalg.svd(fit_z - mean, full_matrices=False)
  axes = np.zeros((2, fit_z.shape[1]))
  axes[:min(2, len(vt))] = vt[:2]
  largest = np.argmax(np.abs(axes), axis=1)
  axes *= np.where(axes[np.arange(2), largest] < 0, -1.0, 1.0)[:, None]
  return tuple((np.asarray(z, np.float64) - mean) @ axes.T
               for z in (fit_z,) + apply_z)


def _scatter(ax, points, labels, class_names, title):
  labels = np.asarray(labels)
  colours = matplotlib.colormaps['tab10']
  for index, name in enumerate(class_names):
    chosen = points[labels == index]
    ax.scatter(chosen[:, 0], chosen[:, 1], s=6, alpha=0.6,
               color=colours(index % 10), label=f'{name} ({len(chosen)})')
  ax.set_title(title)
  ax.set_xlabel('PC 1')
  ax.legend(loc='best', fontsize=7, markerscale=2)


def embeddings_pca(train_z, train_labels, test_z, test_labels,
                   class_names: Sequence[str], path, *, title: str = ''):
  """Train and test embeddings side by side on the train set's 2-D PCA axes.

  The paper's Figure 4: points coloured by class, the two panels sharing
  their axes so that the spread of the classes compares directly.

  Args:
    train_z: `[n, d]` training embeddings (they define the axes).
    train_labels: `[n]` class indices.
    test_z: `[m, d]` test embeddings.
    test_labels: `[m]` class indices.
    class_names: the class names, by index.
    path: the PNG to write.
    title: the figure title.

  Returns:
    `path`.
  """
  train_2d, test_2d = pca_2d(train_z, test_z)
  fig = mpl_figure.Figure(figsize=(11, 5))
  axes = fig.subplots(1, 2, sharex=True, sharey=True)
  _scatter(axes[0], train_2d, train_labels, class_names, 'train')
  _scatter(axes[1], test_2d, test_labels, class_names, 'test')
  axes[0].set_ylabel('PC 2')
  fig.suptitle(title)
  return _save(fig, path)


def _series(records: Sequence[Mapping], split: str, key: str):
  """(steps, values) of `key` in the records of `split`, in step order."""
  pairs = sorted((int(r['step']), float(r[key])) for r in records
                 if r.get('split') == split and key in r)
  return [p[0] for p in pairs], [p[1] for p in pairs]


def training_curves(records: Sequence[Mapping], path):
  """Losses and dev UA/WA against the step, in two panels.

  Args:
    records: metric dicts as in `metrics.jsonl`: each has 'step' and 'split'
      ('train', 'dev' or 'test'); train records have 'loss', 'ce' and
      'center', dev records 'ua' and 'wa'. Missing keys are skipped.
    path: the PNG to write.

  Returns:
    `path`.
  """
  fig = mpl_figure.Figure(figsize=(11, 4))
  loss_ax, score_ax = fig.subplots(1, 2, sharex=True)
  plotted = []
  for key in ('loss', 'ce', 'center'):
    steps, values = _series(records, 'train', key)
    if steps:
      loss_ax.plot(steps, values, label=key, linewidth=1)
      plotted.extend(values)
  if plotted and min(plotted) > 0:
    loss_ax.set_yscale('log')  # the centre loss starts orders above the CE
  loss_ax.set_title('training losses')
  for key in ('ua', 'wa'):
    steps, values = _series(records, 'dev', key)
    if steps:
      score_ax.plot(steps, values, marker='.', label=f'dev {key.upper()}')
  steps, values = _series(records, 'dev', 'ua')
  if steps:
    best = int(np.argmax(values))
    score_ax.axvline(steps[best], color='grey', linestyle=':',
                     label=f'best dev UA {values[best]:.4g} at {steps[best]}')
  score_ax.set_title('dev accuracy')
  for ax in (loss_ax, score_ax):
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
    else:
      ax.text(0.5, 0.5, 'no data', ha='center', va='center',
              transform=ax.transAxes)
  return _save(fig, path)


def ua_wa_bars(rows: Sequence[Mapping], path, *, title: str = ''):
  """Grouped UA/WA bars, one group per variant, the paper's as markers.

  The paper's Figure 5: each bar is the mean with its std as the error bar,
  labelled with the mean; a diamond marks the paper's number where it has one.

  Args:
    rows: a study's rows (`ablate_report.variant_row`): 'variant', 'ua_mean',
      'ua_std', 'wa_mean', 'wa_std' and 'paper_ua', 'paper_wa' (None where
      the paper does not report them), all in %.
    path: the PNG to write.
    title: the figure title.

  Returns:
    `path`.
  """
  fig = mpl_figure.Figure(figsize=(2 + 1.4 * len(rows), 4.5))
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
  return _save(fig, path)


def ua_wa_curve(rows: Sequence[Mapping], field: str, path, *, title: str = ''):
  """UA/WA (mean ± std) against lambda or alpha, the paper's dashed.

  The paper's Figure 3. lambda goes on a log axis, with lambda 0 drawn a
  decade left of the smallest positive value, past a dotted break.

  Args:
    rows: a sweep's rows (`ablate_report.sweep`), as for `ua_wa_bars`, each
      with `field` too.
    field: 'lambda' or 'alpha'.
    path: the PNG to write.
    title: the figure title.

  Returns:
    `path`.
  """
  values = np.array([r[field] for r in rows], np.float64)
  positive = values[values > 0]
  logx = field == 'lambda' and len(positive) > 0
  # On the log axis lambda 0 sits a decade below the smallest positive value.
  zero_at = positive.min() / 10 if logx else 0.0
  x = np.where(values > 0, values, zero_at)
  fig = mpl_figure.Figure(figsize=(6, 4.2))
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
  return _save(fig, path)


def run_plots(workdir: str, classes: Sequence[str], confusion_counts,
              train_out: Mapping, test_out: Mapping) -> dict[str, str]:
  """A finished run's figures in its workdir: `{name: path}`.

  The test confusion matrix, the PCA of the embeddings z (train and test,
  the paper's Figure 4) and the training curves of `metrics.jsonl`.
  """
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  return {
      'confusion': confusion(np.asarray(confusion_counts), classes,
                             os.path.join(workdir, 'confusion.png'),
                             title='test confusion (row-normalised)'),
      'embeddings': embeddings_pca(
          train_out['embeddings'], train_out['labels'], test_out['embeddings'],
          test_out['labels'], classes, os.path.join(workdir, 'embeddings_pca.png')),
      'curves': training_curves(records, os.path.join(workdir, 'curves.png')),
  }
