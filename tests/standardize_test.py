"""Per-bin standardisation: fitted on valid frames only, padding stays 0."""

import numpy as np

from jaxser import standardize


def test_standardizer_fit_and_apply():
  rng = np.random.default_rng(4)
  lengths = np.array([5, 3, 7])
  batch = np.zeros((3, 7, 4), np.float32)
  for i, n in enumerate(lengths):
    batch[i, :n] = rng.normal(10.0 * i, 1.0 + i, size=(n, 4))
  batch[1, 3:] = 1e6  # padding that must be ignored
  stats = standardize.fit_standardizer(batch, lengths)
  valid = np.concatenate([batch[i, :n] for i, n in enumerate(lengths)])
  np.testing.assert_allclose(stats.mean, valid.mean(0), rtol=1e-5)
  np.testing.assert_allclose(stats.std, valid.std(0), rtol=1e-5)
  # Fitting from a list of unpadded arrays gives the same statistics.
  listed = standardize.fit_standardizer([batch[i, :n] for i, n in enumerate(lengths)])
  np.testing.assert_allclose(listed.mean, stats.mean, rtol=1e-6)
  np.testing.assert_allclose(listed.std, stats.std, rtol=1e-6)
  out = np.asarray(standardize.standardize(batch, lengths, stats))
  normed = np.concatenate([out[i, :n] for i, n in enumerate(lengths)])
  np.testing.assert_allclose(normed.mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(normed.std(0), 1.0, atol=1e-5)
  assert np.all(out[1, 3:] == 0.0)


def test_standardizer_constant_bin_does_not_divide_by_zero():
  feats = np.ones((1, 4, 2), np.float32)
  stats = standardize.fit_standardizer(feats, np.array([4]))
  out = np.asarray(standardize.standardize(feats, np.array([4]), stats))
  assert np.all(np.isfinite(out)) and np.all(out == 0.0)
