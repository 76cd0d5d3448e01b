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


def test_per_utterance_normalisation_removes_a_channel_and_keeps_padding():
  import jax  # pylint: disable=g-import-not-at-top
  from jaxser import config_lib  # pylint: disable=g-import-not-at-top
  from jaxser.configs import tiny  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  lengths = np.array([40, 7, 25], np.int32)
  x = rng.standard_normal((3, 40, 64)).astype(np.float32)  # the tiny model: 64 bins
  for row, length in enumerate(lengths):
    x[row, length:] = 0.0
  channel = rng.uniform(-10, 10, (3, 1, 64)).astype(np.float32)  # per utterance and bin
  coloured = np.where(np.arange(40)[None, :, None] < lengths[:, None, None], x + channel, 0)
  for variance in (False, True):
    plain = np.asarray(standardize.normalize_utterances(x, lengths, variance=variance))
    other = np.asarray(standardize.normalize_utterances(coloured, lengths, variance=variance))
    np.testing.assert_allclose(plain, other, atol=2e-5)  # the channel is gone
    for row, length in enumerate(lengths):
      assert np.all(plain[row, length:] == 0)  # padding stays 0
      np.testing.assert_allclose(plain[row, :length].mean(0), 0, atol=1e-5)
      if variance:
        np.testing.assert_allclose(plain[row, :length].std(0), 1, atol=1e-4)
  # In the model (so in training, evaluation, prediction and export alike).
  config = tiny.get_config()
  config.model.utterance_norm = 'mean'
  model = config_lib.create_model(config, 4)
  variables = model.init(jax.random.key(0), x, lengths)
  np.testing.assert_allclose(model.apply(variables, x, lengths)[0],
                             model.apply(variables, coloured, lengths)[0], atol=1e-4)
  config.model.utterance_norm = 'none'
  plain_model = config_lib.create_model(config, 4)
  assert not np.allclose(plain_model.apply(variables, x, lengths)[0],
                         plain_model.apply(variables, coloured, lengths)[0], atol=1e-4)
