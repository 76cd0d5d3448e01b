"""jaxser.report: fold statistics and averaged confusion by hand; compactness."""

import json

import numpy as np
import pytest

from jaxser import report
from jaxser.data.records import PAPER_4CLASS

CLASSES = PAPER_4CLASS.classes

# Two folds with hand-checkable row-normalised matrices.
CM_A = [[3, 1, 0, 0], [0, 2, 2, 0], [1, 1, 1, 1], [0, 0, 0, 5]]
CM_B = [[1, 1, 0, 0], [0, 4, 0, 0], [0, 0, 2, 2], [1, 0, 0, 3]]


def results():
  return [
      {'fold': 'fold0', 'seed': 0, 'ua': 0.60, 'wa': 0.55, 'confusion': CM_A},
      {'fold': 'fold1', 'seed': 0, 'ua': 0.70, 'wa': 0.65, 'confusion': CM_B},
      {'fold': 'fold0', 'seed': np.int64(1), 'ua': 0.80, 'wa': 0.90,
       'confusion': CM_A},
  ]


def test_mean_std_and_averaged_confusion():
  summary = report.fold_summary(results(), CLASSES)
  assert summary['class_names'] == list(CLASSES)
  assert summary['num_folds'] == 3
  assert summary['std_ddof'] == 0
  # UA 0.6, 0.7, 0.8: mean 0.7, population std sqrt(0.02 / 3).
  assert summary['ua']['mean'] == pytest.approx(0.7)
  assert summary['ua']['std'] == pytest.approx(np.sqrt(0.02 / 3))
  assert summary['wa']['mean'] == pytest.approx(0.7)
  assert summary['wa']['std'] == pytest.approx(np.sqrt((0.15**2 + 0.05**2 + 0.2**2) / 3))
  assert [(s['seed'], s['ua']) for s in summary['seeds']] == [
      (0, pytest.approx(0.65)), (1, pytest.approx(0.8))]
  # Mean of the row-normalised matrices of A, B, A (not of the summed counts).
  expected = np.array([
      [(2 * 0.75 + 0.5) / 3, (2 * 0.25 + 0.5) / 3, 0, 0],
      [0, (2 * 0.5 + 1) / 3, (2 * 0.5) / 3, 0],
      [(2 * 0.25) / 3, (2 * 0.25) / 3, (2 * 0.25 + 0.5) / 3, (2 * 0.25 + 0.5) / 3],
      [0.25 / 3, 0, 0, (2 + 0.75) / 3]])
  np.testing.assert_allclose(summary['confusion'], expected, atol=1e-6)
  np.testing.assert_allclose(np.sum(summary['confusion'], axis=1), 1, atol=1e-6)
  assert summary['confusion_counts'][3] == [1, 0, 0, 13]
  assert [r['fold'] for r in summary['folds']] == ['fold0', 'fold1', 'fold0']
  # JSON-ready, numpy seed included.
  assert json.loads(json.dumps(summary)) == summary


def test_a_fold_without_a_class_does_not_pull_its_row_to_zero():
  no_sad = [row[:] for row in CM_B]
  no_sad[3] = [0, 0, 0, 0]
  summary = report.fold_summary(
      [{'fold': 'a', 'seed': 0, 'ua': 0.5, 'wa': 0.5, 'confusion': CM_A},
       {'fold': 'b', 'seed': 0, 'ua': 0.5, 'wa': 0.5, 'confusion': no_sad}],
      CLASSES)
  np.testing.assert_allclose(summary['confusion'][3], [0, 0, 0, 1])


def test_fold_summary_rejects_bad_input():
  with pytest.raises(ValueError, match='at least one'):
    report.fold_summary([], CLASSES)
  with pytest.raises(ValueError, match='shape'):
    report.fold_summary(results(), CLASSES[:3])


def test_markdown_table_holds_the_numbers():
  text = report.markdown_table(report.fold_summary(results(), CLASSES))
  lines = text.splitlines()
  assert lines[0] == '| fold | seed | UA % | WA % | macro-F1 % |'
  # Macro-F1 by hand: A's per-class F1 are 6/8, 4/8, 2/7, 10/11 (mean
  # 61.12 %), B's 2/4, 8/9, 4/6, 6/9 (68.06 %).
  assert '| fold0 | 0 | 60.00 | 55.00 | 61.12 |' in lines
  assert '| fold1 | 0 | 70.00 | 65.00 | 68.06 |' in lines
  assert '| fold0 | 1 | 80.00 | 90.00 | 61.12 |' in lines
  # 100 * sqrt(0.02 / 3) = 8.16; WA std = 100 * sqrt(0.065 / 3) = 14.72.
  assert '| mean ± std |  | 70.00 ± 8.16 | 70.00 ± 14.72 | 63.43 ± 3.27 |' in lines
  assert 'ddof=0' in text
  assert '| 0 | 65.00 | 60.00 | 64.59 |' in lines  # seed 0's means
  assert '| true \\ predicted | neutral | angry | happy | sad |' in lines
  assert '| neutral | 0.667 | 0.333 | 0.000 | 0.000 |' in lines
  assert '| sad | 0.083 | 0.000 | 0.000 | 0.917 |' in lines


def test_markdown_single_seed_has_no_seed_table():
  text = report.markdown_table(report.fold_summary(results()[:2], CLASSES))
  assert 'mean UA %' not in text
  assert '| mean ± std |  | 65.00 ± 5.00 | 60.00 ± 5.00 | 64.59 ± 3.47 |' in text


def clusters(spread, seed=0):
  rng = np.random.default_rng(seed)
  centres = np.array([[0.0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]])
  labels = np.repeat(np.arange(4), 50)
  return centres[labels] + spread * rng.normal(size=(200, 3)), labels


def test_compactness_by_hand():
  # Class 0 at (0, +-1), class 1 at (10, +-1): intra 1, inter 10.
  z = np.array([[0, 1], [0, -1], [10, 1], [10, -1]], float)
  assert report.compactness(z, [0, 0, 1, 1]) == pytest.approx(0.1)
  # Three classes: means 0, 3, 4 on a line -> inter (3 + 4 + 1) / 3.
  z = np.array([[-1.0], [1.0], [3.0], [3.0], [4.0]])
  assert report.compactness(z, [5, 5, 7, 7, 9]) == pytest.approx((2 / 5) / (8 / 3))


def test_compactness_tight_beats_loose_and_is_scale_invariant():
  tight_z, labels = clusters(0.5)
  loose_z, _ = clusters(3.0)
  tight = report.compactness(tight_z, labels)
  assert tight < 0.5 * report.compactness(loose_z, labels)
  assert report.compactness(7.5 * tight_z, labels) == pytest.approx(tight)
  assert report.compactness(tight_z + 100, labels) == pytest.approx(tight)


def test_compactness_needs_two_classes():
  with pytest.raises(ValueError, match='2 classes'):
    report.compactness(np.ones((4, 2)), [1, 1, 1, 1])
  with pytest.raises(ValueError, match='labels'):
    report.compactness(np.ones((4, 2)), [0, 1])


def test_paired_difference_pairs_by_seed_and_fold():
  before = report.fold_summary(results(), CLASSES)
  after_rows = [dict(r, ua=r['ua'] + d) for r, d in zip(results(), (0.1, -0.02, 0.04))]
  after = report.fold_summary(after_rows[::-1], CLASSES)  # order does not matter
  stats = report.paired_difference(after, before)
  assert stats['n'] == 3 and stats['better'] == 2
  assert stats['mean'] == pytest.approx(0.04)
  assert stats['std'] == pytest.approx(np.std([0.1, -0.02, 0.04], ddof=1))
  assert stats['t'] == pytest.approx(0.04 / (stats['std'] / np.sqrt(3)))
  with pytest.raises(ValueError, match='runs differ'):
    report.paired_difference(report.fold_summary(results()[:2], CLASSES), before)
