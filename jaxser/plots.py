"""PNG figures: confusion matrix, 2-D PCA of the embeddings, training curves.

Every function takes the output path, writes one PNG there (creating its
folder) and returns the path. Figures are built as `matplotlib.figure.Figure`
objects rendered by the Agg canvas, never through `pyplot`: nothing is
registered with a GUI backend, nothing needs a display, and a figure is freed
as soon as the function returns.
"""

import os
import pathlib
from typing import Mapping, Sequence

from absl import logging
import matplotlib
from matplotlib import figure as mpl_figure
import numpy as np

from jaxser import metrics

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


def bars(groups: Mapping[str, Sequence[float]], path, *, ylabel: str = '',
         title: str = ''):
  """One bar per group: the mean, its population std and every value.

  For ablations: e.g. `{'softmax': [UA per seed], 'centre loss': [...]}`.

  Args:
    groups: name -> values (per seed or fold), in the order to draw.
    path: the PNG to write.
    ylabel: the y axis label.
    title: the figure title.

  Returns:
    `path`.
  """
  names = list(groups)
  fig = mpl_figure.Figure(figsize=(1.5 + 1.2 * len(names), 4))
  ax = fig.add_subplot()
  for position, name in enumerate(names):
    values = np.asarray(groups[name], np.float64)
    if not values.size:
      raise ValueError(f'bars: group {name!r} has no values')
    ax.bar(position, values.mean(), yerr=values.std(), capsize=4,
           color='lightsteelblue', edgecolor='steelblue')
    ax.scatter(np.full(len(values), position), values, s=10, color='black',
               zorder=3)
    ax.annotate(f'{values.mean():.2f}', (position, values.mean() + values.std()),
                textcoords='offset points', xytext=(0, 4), ha='center',
                fontsize=8)
  ax.set_xticks(range(len(names)), names, rotation=20, ha='right')
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(axis='y', alpha=0.3)
  return _save(fig, path)
