"""jaxser.plots: real PNGs with content; PCA along the known direction."""

from matplotlib import image as mpl_image
import numpy as np
import pytest

from jaxser import plots
from jaxser.data.records import PAPER_4CLASS

CLASSES = PAPER_4CLASS.classes
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def assert_png(path, min_bytes=5000):
  data = path.read_bytes()
  assert data[:8] == PNG_SIGNATURE
  assert len(data) > min_bytes
  pixels = mpl_image.imread(str(path))
  height, width = pixels.shape[:2]
  assert height > 200 and width > 200
  # Not a blank canvas: many distinct colours.
  rgb = (pixels[..., :3] * 255).astype(np.uint32)
  colours = np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2])
  assert len(colours) > 20


def test_confusion_writes_png(tmp_path):
  cm = np.array([[50, 5, 3, 2], [4, 40, 6, 0], [10, 8, 30, 2], [0, 0, 0, 0]])
  path = tmp_path / 'sub' / 'confusion.png'
  assert plots.confusion(cm, CLASSES, path, title='fold 0') == path
  assert_png(path)


def test_confusion_rejects_wrong_shape(tmp_path):
  with pytest.raises(ValueError, match='shape'):
    plots.confusion(np.ones((3, 3)), CLASSES, tmp_path / 'x.png')


def test_pca_2d_finds_the_dominant_direction():
  rng = np.random.default_rng(0)
  direction = np.array([1.0, 2.0, -2.0, 0.0]) / 3  # unit length
  second = np.array([0.0, 0.0, 0.0, 1.0])
  coords = rng.normal(size=(500, 1)) * 10
  fit = (5 + coords * direction + rng.normal(size=(500, 1)) * second
         + rng.normal(size=(500, 4)) * 0.01)
  fit_2d, test_2d = plots.pca_2d(fit, fit.mean(0) + np.array([3 * direction,
                                                              -2 * second]))
  assert fit_2d.shape == (500, 2) and test_2d.shape == (2, 2)
  # The first coordinate is the position along `direction` (the sign is fixed
  # so that the largest loading, the +2/3 or -2/3, is positive).
  sign = np.sign(np.corrcoef(fit_2d[:, 0], coords[:, 0])[0, 1])
  np.testing.assert_allclose(fit_2d[:, 0], sign * (coords[:, 0] - coords.mean()),
                             atol=0.1)
  assert np.var(fit_2d[:, 0]) > 50 * np.var(fit_2d[:, 1])
  np.testing.assert_allclose(np.abs(test_2d), [[3, 0], [0, 2]], atol=0.05)
  # Centred on the fit set.
  np.testing.assert_allclose(fit_2d.mean(0), 0, atol=1e-9)


def test_pca_2d_handles_one_dimension():
  (projected,) = plots.pca_2d(np.arange(6.0)[:, None])
  np.testing.assert_allclose(projected[:, 0], np.arange(6.0) - 2.5)
  np.testing.assert_array_equal(projected[:, 1], 0)


def test_embeddings_pca_writes_png(tmp_path):
  rng = np.random.default_rng(1)
  centres = rng.normal(size=(4, 8)) * 5
  train_labels = rng.integers(0, 4, 200)
  test_labels = rng.integers(0, 4, 60)
  train_z = centres[train_labels] + rng.normal(size=(200, 8))
  test_z = centres[test_labels] + rng.normal(size=(60, 8))
  path = tmp_path / 'pca.png'
  assert plots.embeddings_pca(train_z, train_labels, test_z, test_labels,
                              CLASSES, path, title='centre loss') == path
  assert_png(path)


def test_training_curves_writes_png(tmp_path):
  records = []
  for step in range(0, 300, 10):
    records.append({'step': step, 'split': 'train', 'loss': 2 / (1 + step),
                    'ce': 1.5 / (1 + step), 'center': 5 / (1 + step)})
    if step >= 100 and step % 30 == 0:
      records.append({'step': step, 'split': 'dev', 'ua': 0.3 + step / 1000,
                      'wa': 0.35 + step / 1200})
  records.append({'step': 290, 'split': 'test', 'ua': 0.5, 'wa': 0.6})
  path = tmp_path / 'curves.png'
  assert plots.training_curves(records, path) == path
  assert_png(path)


def test_training_curves_without_dev_records(tmp_path):
  records = [{'step': s, 'split': 'train', 'loss': 1.0, 'ce': 1.0, 'center': 0.0}
             for s in range(5)]
  assert_png(plots.training_curves(records, tmp_path / 'c.png'))
  assert_png(plots.training_curves([], tmp_path / 'empty.png'), min_bytes=2000)


def study_rows(field, values, paper_ua):
  """Rows as `ablate_report.variant_row` makes them, differing in `field`."""
  rows = []
  for value, paper in zip(values, paper_ua):
    row = {'variant': f'{field}{value:g}', 'features': 'mel', 'lambda': 0.3,
           'alpha': 0.5, 'ua_mean': 60 + value, 'ua_std': 1.5,
           'wa_mean': 58 + value, 'wa_std': 0.8, 'paper_ua': paper,
           'paper_wa': None}
    row[field] = value
    rows.append(row)
  return rows


def test_ua_wa_bars_writes_png(tmp_path):
  rows = study_rows('lambda', (0.0, 0.3), (63.80, None))
  path = tmp_path / 'bars.png'
  assert plots.ua_wa_bars(rows, path, title='settings') == path
  assert_png(path)


@pytest.mark.parametrize('field,values', [('lambda', (0.0, 0.003, 0.3, 3.0)),
                                          ('alpha', (0.1, 0.5, 0.9))])
def test_ua_wa_curve_writes_png(tmp_path, field, values):
  rows = study_rows(field, values, [66.0 + v for v in values])
  path = tmp_path / f'{field}.png'
  assert plots.ua_wa_curve(rows, field, path, title=field) == path
  assert_png(path)


def test_pca_axes_explain_the_variance():
  rng = np.random.default_rng(3)
  z = rng.normal(size=(500, 3)) * np.array([3.0, 1.0, 0.1])
  _, axes, explained = plots.pca_axes(z)
  # Variances 9, 1 and 0.01 (about): the first two axes hold 90 % and 10 %.
  np.testing.assert_allclose(explained, [9 / 10.01, 1 / 10.01], atol=0.02)
  assert abs(axes[0, 0]) > 0.99 and abs(axes[1, 1]) > 0.99


def test_figure4_draws_runs_side_by_side_with_centres(tmp_path):
  rng = np.random.default_rng(2)
  panels = []
  for spread in (3.0, 1.0):  # without and with the centre loss
    centres = rng.normal(size=(4, 8)) * 5
    train_labels, test_labels = rng.integers(0, 4, 200), rng.integers(0, 4, 60)
    panels.append({'train_z': centres[train_labels] + spread * rng.normal(size=(200, 8)),
                   'test_z': centres[test_labels] + spread * rng.normal(size=(60, 8)),
                   'test_labels': test_labels, 'centers': centres,
                   'title': f'spread {spread}'})
  path = tmp_path / 'figure4.png'
  assert plots.figure4(panels, CLASSES, path, title='Figure 4') == path
  assert_png(path)
  panels[0]['centers'] = None  # a run without saved centres still draws
  assert_png(plots.figure4(panels, CLASSES, tmp_path / 'no_centres.png'))
