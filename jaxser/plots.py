"""PNG figures: confusion matrix, 2-D PCA of the embeddings, training curves,
and a study's UA/WA per variant, against lambda or alpha, and its Figure 4.

Classes and metrics take the Okabe-Ito colours (told apart with every common
colour-vision deficiency); accuracies are drawn on their whole range (0 to 1,
or 0 to 100 %), and every axis says what it shows.

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
from matplotlib import figure as mpl_figure
import numpy as np

from jaxser import metrics

__all__ = ['PALETTE', 'confusion', 'embeddings_pca', 'figure4', 'pca_2d', 'pca_axes',
           'real_and_generated', 'run_plots', 'run_title', 'training_curves', 'ua_wa_bars', 'ua_wa_curve']

_DPI = 120
# Okabe & Ito (2008): blue, orange, bluish green, vermillion, reddish purple,
# sky blue, yellow, black.
PALETTE = ('#0072B2', '#E69F00', '#009E73', '#D55E00', '#CC79A7', '#56B4E9',
           '#F0E442', '#000000')
_METRIC_COLOURS = {'ua': PALETTE[0], 'wa': PALETTE[1], 'f1': PALETTE[2]}


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
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04).set_label('fraction of the true class')
  for (row, col), value in np.ndenumerate(fractions):
    ax.text(col, row, f'{value:.3f}\n({int(counts[row, col])})', ha='center',
            va='center', fontsize=8, color='white' if value > 0.5 else 'black')
  ax.set_xticks(range(num), class_names, rotation=45, ha='right')
  ax.set_yticks(range(num), class_names)
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  ax.set_title(title)
  return _save(fig, path)


def pca_axes(fit_z) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The first two principal axes of `fit_z`: `(mean [d], axes [2, d], explained [2])`.

  The axes come from the SVD of the centred `fit_z`; each axis' sign is fixed
  so that its largest loading is positive, so the picture is deterministic.
  `explained` is the fraction of `fit_z`'s variance along each axis. Where
  `fit_z` has fewer than two directions the missing axes are 0.
  """
  fit_z = np.asarray(fit_z, np.float64)
  if fit_z.ndim != 2 or not len(fit_z):
    raise ValueError(f'pca_2d needs a non-empty [n, d] array, got {fit_z.shape}')
  mean = fit_z.mean(axis=0)
  _, singular, vt = np.linalg.svd(fit_z - mean, full_matrices=False)
  axes, explained = np.zeros((2, fit_z.shape[1])), np.zeros(2)
  axes[:min(2, len(vt))] = vt[:2]
  total = np.sum(singular ** 2)
  if total > 0:
    explained[:min(2, len(singular))] = singular[:2] ** 2 / total
  largest = np.argmax(np.abs(axes), axis=1)
  axes *= np.where(axes[np.arange(2), largest] < 0, -1.0, 1.0)[:, None]
  return mean, axes, explained


def pca_2d(fit_z, *apply_z) -> tuple[np.ndarray, ...]:
  """Projects embeddings on the first two principal axes of `fit_z` (`pca_axes`).

  Args:
    fit_z: `[n, d]` embeddings that define the axes (the training set).
    *apply_z: more `[m, d]` arrays projected on the same axes (the test set).

  Returns:
    `([n, 2] fit_z projected, [m, 2] each apply_z projected ...)`.
  """
  project, _ = _projector(fit_z)
  return tuple(project(z) for z in (fit_z,) + apply_z)


def _projector(fit_z):
  """`(z -> [n, 2] on fit_z's PCA axes, explained [2])`."""
  mean, axes, explained = pca_axes(fit_z)
  return (lambda z: (np.asarray(z, np.float64) - mean) @ axes.T), explained


def _scatter(ax, points, labels, class_names, title, centers=None, explained=None):
  """Points by class on PCA axes; the centres as stars, each in its class' colour."""
  labels = np.asarray(labels)
  for index, name in enumerate(class_names):
    chosen = points[labels == index]
    colour = PALETTE[index % len(PALETTE)]
    ax.scatter(chosen[:, 0], chosen[:, 1], s=6, alpha=0.55, color=colour,
               label=f'{name} ({len(chosen)})')
    if centers is not None:
      ax.scatter(*centers[index], marker='*', s=220, color=colour,
                 edgecolor='black', linewidth=0.8, zorder=3)
  if centers is not None:
    ax.scatter([], [], marker='*', s=120, color='white', edgecolor='black',
               label='learned centre')
  ax.set_title(title)
  for axis, set_label in enumerate((ax.set_xlabel, ax.set_ylabel)):
    share = '' if explained is None else f' ({100 * explained[axis]:.1f} % of variance)'
    set_label(f'PC {axis + 1}{share}')
  ax.legend(loc='best', fontsize=7, markerscale=1.5)


def embeddings_pca(train_z, train_labels, test_z, test_labels,
                   class_names: Sequence[str], path, *, title: str = '',
                   centers=None):
  """Train and test embeddings side by side on the train set's 2-D PCA axes.

  Points coloured by class, the two panels sharing their axes so that the
  spread of the classes compares directly; each axis says how much of the
  training embeddings' variance it holds, and the learned class centres
  (`[C, d]`, when given) are drawn on both panels. `train_z [n, d]` defines
  the axes; labels are class indices into `class_names`. Returns `path`.
  """
  project, explained = _projector(train_z)
  c2d = None if centers is None else project(centers)
  fig = mpl_figure.Figure(figsize=(11, 5))
  axes = fig.subplots(1, 2, sharex=True, sharey=True)
  _scatter(axes[0], project(train_z), train_labels, class_names, 'train', c2d, explained)
  _scatter(axes[1], project(test_z), test_labels, class_names, 'test', c2d, explained)
  fig.suptitle(title)
  return _save(fig, path)


def figure4(panels: Sequence[Mapping], class_names: Sequence[str], path, *,
            title: str = ''):
  """The paper's Figure 4: test embeddings of runs side by side, shared axes.

  Each panel is one run (settings 1 and 2: without and with the centre
  loss): its test embeddings on its own training embeddings' PCA axes, its
  centres as stars, the axes' explained variance, and its title.

  `panels`: one mapping per panel, with 'train_z', 'test_z', 'test_labels',
  'title' and 'centers' (`[C, d]`, or None). Returns `path`.
  """
  fig = mpl_figure.Figure(figsize=(5.5 * len(panels), 5))
  axes = np.atleast_1d(fig.subplots(1, len(panels), sharex=True, sharey=True))
  for ax, panel in zip(axes, panels):
    project, explained = _projector(panel['train_z'])
    centers = panel.get('centers')
    _scatter(ax, project(panel['test_z']), panel['test_labels'], class_names,
             panel['title'], None if centers is None else project(centers), explained)
  fig.suptitle(title)
  return _save(fig, path)


def _series(records: Sequence[Mapping], split: str, key: str):
  """(steps, values) of `key` in the records of `split`, in step order."""
  pairs = sorted((int(r['step']), float(r[key])) for r in records
                 if r.get('split') == split and key in r)
  return [p[0] for p in pairs], [p[1] for p in pairs]


def training_curves(records: Sequence[Mapping], path, *, title: str = ''):
  """Losses and dev UA/WA against the step, in two panels.

  Args:
    records: metric dicts as in `metrics.jsonl`: each has 'step' and 'split'
      ('train', 'dev' or 'test'); train records have 'loss', 'ce' and
      'center', dev records 'ua' and 'wa'. Missing keys are skipped.
    path: the PNG to write.
    title: the figure title (the run's identity).

  Returns:
    `path`.
  """
  fig = mpl_figure.Figure(figsize=(11, 4))
  loss_ax, score_ax = fig.subplots(1, 2, sharex=True)
  plotted = []
  for key, colour in (('loss', PALETTE[7]), ('ce', PALETTE[0]), ('center', PALETTE[3])):
    steps, values = _series(records, 'train', key)
    if steps:
      loss_ax.plot(steps, values, label=key, linewidth=1, color=colour)
      plotted.extend(values)
  log = bool(plotted) and min(plotted) > 0
  if log:
    loss_ax.set_yscale('log')  # the centre loss starts orders above the CE
  loss_ax.set_title('training losses')
  loss_ax.set_ylabel('loss (log scale)' if log else 'loss')
  for key in ('ua', 'wa', 'f1'):
    steps, values = _series(records, 'dev', key)
    if steps:
      score_ax.plot(steps, values, marker='.', color=_METRIC_COLOURS[key],
                    label=f'dev {"macro-F1" if key == "f1" else key.upper()}')
  steps, values = _series(records, 'dev', 'ua')
  if steps:
    best = int(np.argmax(values))
    score_ax.axvline(steps[best], color='grey', linestyle=':',
                     label=f'best dev UA {values[best]:.4g} at {steps[best]}')
  score_ax.set_title('dev accuracy')
  score_ax.set_ylim(0, 1)
  score_ax.set_ylabel('fraction')
  fig.suptitle(title)
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
  for offset, metric in ((-0.2, 'ua'), (0.2, 'wa')):
    colour = _METRIC_COLOURS[metric]
    means = [r[f'{metric}_mean'] for r in rows]
    ax.bar(x + offset, means, width=0.38, yerr=[r[f'{metric}_std'] for r in rows],
           capsize=3, color=colour, alpha=0.75, label=f'{metric.upper()} measured')
    for xi, mean in zip(x + offset, means):  # inside the bar, clear of the error bar
      ax.annotate(f'{mean:.1f}', (xi, 0), textcoords='offset points',
                  xytext=(0, 3), ha='center', va='bottom', fontsize=7, color='white')
    paper = [(xi, r[f'paper_{metric}']) for xi, r in zip(x + offset, rows)
             if r[f'paper_{metric}'] is not None]
    if paper:
      ax.scatter(*zip(*paper), marker='D', s=28, color=colour, edgecolor='black',
                 zorder=3, label=f'{metric.upper()} paper (IEMOCAP)')
  ax.set_xticks(x, [r['variant'] for r in rows], rotation=20, ha='right')
  ax.set_ylim(0, 100)
  ax.set_ylabel('UA, WA (%): mean ± std over the runs')
  ax.set_title(title)
  ax.grid(axis='y', alpha=0.3)
  ax.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1.01, 1))
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
  for metric in ('ua', 'wa'):
    colour = _METRIC_COLOURS[metric]
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
  ax.set_ylim(0, 100)
  ax.set_ylabel('UA, WA (%): mean ± std over the runs')
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return _save(fig, path)


def real_and_generated(real_z, real_labels, generated: Mapping, class_names, path,
                       *, title: str = ''):
  """Real vectors (dots) and generated ones (crosses) per class, one panel each.

  `generated` maps a panel's name to `(z [m, d], labels [m])`; every panel
  uses the PCA axes of the real `[n, d]` vectors. Returns `path`.
  """
  project, explained = _projector(real_z)
  real_2d, real_labels = project(real_z), np.asarray(real_labels)
  fig = mpl_figure.Figure(figsize=(5.5 * len(generated), 5))
  axes = np.atleast_1d(fig.subplots(1, len(generated), sharex=True, sharey=True))
  for ax, (name, (z, labels)) in zip(axes, generated.items()):
    fake_2d, labels = project(z), np.asarray(labels)
    for index, cls in enumerate(class_names):
      colour = PALETTE[index % len(PALETTE)]
      ax.scatter(*real_2d[real_labels == index].T, s=5, alpha=0.35, color=colour,
                 label=f'{cls}, real')
      ax.scatter(*fake_2d[labels == index].T, s=14, marker='x', linewidth=0.8,
                 alpha=0.7, color=colour, label=f'{cls}, generated')
    ax.set_title(name)
    ax.set_xlabel(f'PC 1 ({100 * explained[0]:.1f} % of the real variance)')
    ax.set_ylabel(f'PC 2 ({100 * explained[1]:.1f} % of the real variance)')
    ax.legend(fontsize=6, ncol=2, loc='best')
  fig.suptitle(title)
  return _save(fig, path)


def run_plots(workdir: str, classes: Sequence[str], confusion_counts,
              train_out: Mapping, test_out: Mapping, *, title: str = '',
              centers=None) -> dict[str, str]:
  """A finished run's figures in its workdir: `{name: path}`.

  The test confusion matrix, the PCA of the embeddings z (train and test,
  with the learned centres) and the training curves of `metrics.jsonl`,
  each titled with `title` (the run's identity and result).
  """
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  return {
      'confusion': confusion(np.asarray(confusion_counts), classes,
                             os.path.join(workdir, 'confusion.png'),
                             title=f'{title}\ntest confusion (row-normalised)'),
      'embeddings': embeddings_pca(
          train_out['embeddings'], train_out['labels'], test_out['embeddings'],
          test_out['labels'], classes, os.path.join(workdir, 'embeddings_pca.png'),
          title=title, centers=centers),
      'curves': training_curves(records, os.path.join(workdir, 'curves.png'), title=title),
  }


def run_title(config, fold_name: str, test: Mapping) -> str:
  """A run's identity and result, one line: corpus, fold, features, λ, α, UA, WA."""
  return (f'{config.corpus} {fold_name} seed {config.seed}, {config.features.kind}, '
          f'λ {config.center_loss_weight:g}, α {config.center_alpha:g}: '
          f'test UA {100 * test["ua"]:.1f} %, WA {100 * test["wa"]:.1f} %')
