"""jaxser.input_augment: padding untouched, valid frames changed as specified,
masks within their widths, a key fixes the outcome; a run with augmentation
resumes exactly."""

import jax
import numpy as np
import pytest

from jaxser import input_augment
from jaxser import train

from conftest import assert_resumes_exactly
from conftest import tiny_run_config

SENTINEL = 7.0  # in the padding, so that any write to it shows


def batch(seed=0, rows=6, frames=50, bins=16):
  rng = np.random.default_rng(seed)
  lengths = np.array([50, 1, 12, 30, 49, 7][:rows], np.int32)
  x = rng.uniform(0.5, 1.5, (rows, frames, bins)).astype(np.float32)  # no zeros
  for row, length in enumerate(lengths):
    x[row, length:] = SENTINEL
  return x, lengths


def runs(mask_row):
  """Lengths of the runs of True in a 1-D bool array."""
  out, count = [], 0
  for value in list(mask_row) + [False]:
    if value:
      count += 1
    elif count:
      out.append(count)
      count = 0
  return out


def masked(mask_fn, seed, **settings):
  """`(x, lengths, out)`, the padding of every row checked untouched."""
  x, lengths = batch()
  out = np.asarray(mask_fn(jax.random.key(seed), x, lengths, **settings))
  for row, length in enumerate(lengths):
    np.testing.assert_array_equal(out[row, length:], x[row, length:])
  return x, lengths, out


@pytest.mark.parametrize('seed', range(5))
def test_time_masks_zero_at_most_count_bands_of_valid_frames(seed):
  x, lengths, out = masked(input_augment.time_masks, seed, count=2, max_width=6)
  for row, length in enumerate(lengths):
    zeroed = np.all(out[row, :length] == 0, axis=-1)
    kept = ~zeroed
    np.testing.assert_array_equal(out[row, :length][kept], x[row, :length][kept])
    assert not np.any((out[row, :length] == 0) & ~zeroed[:, None])  # whole frames
    assert zeroed.sum() <= 2 * 6 and all(r <= 2 * 6 for r in runs(zeroed))
  bands = input_augment._bands(jax.random.key(seed), 3, 6, np.asarray(lengths))
  starts, widths = map(np.asarray, bands)
  assert np.all(widths <= 6) and np.all(widths <= lengths[:, None])
  assert np.all(starts >= 0) and np.all(starts + widths <= lengths[:, None])


@pytest.mark.parametrize('seed', range(5))
def test_frequency_masks_zero_bands_of_bins_on_valid_frames_only(seed):
  x, lengths, out = masked(input_augment.freq_masks, seed, count=1, max_width=4)
  for row, length in enumerate(lengths):
    zeroed = np.all(out[row, :length] == 0, axis=0)  # bins zero on every valid frame
    assert len(runs(zeroed)) <= 1 and zeroed.sum() <= 4  # one band, at most 4 wide
    np.testing.assert_array_equal(out[row, :length][:, ~zeroed], x[row, :length][:, ~zeroed])


def test_gain_and_tilt_are_a_level_and_a_ramp_in_db():
  x, lengths = batch()
  std = np.linspace(2.0, 10.0, 16).astype(np.float32)
  gain = np.asarray(input_augment.gain_tilt(jax.random.key(1), x, lengths, 1 / std,
                                            gain_db=6.0, tilt_db=0.0))
  tilt = np.asarray(input_augment.gain_tilt(jax.random.key(1), x, lengths, 1 / std,
                                            gain_db=0.0, tilt_db=10.0))
  for row, length in enumerate(lengths):
    np.testing.assert_array_equal(gain[row, length:], x[row, length:])
    np.testing.assert_array_equal(tilt[row, length:], x[row, length:])
    level = (gain[row, :length] - x[row, :length]) * std  # back in dB
    assert np.ptp(level) < 1e-4 and abs(level[0, 0]) <= 6.0  # one level per utterance
    ramp = (tilt[row, :length] - x[row, :length]) * std
    assert np.ptp(ramp, axis=0).max() < 1e-4  # the same on every frame
    slope = np.diff(ramp[0])
    assert np.ptp(slope) < 1e-4  # linear across the bins
    assert abs(ramp[0, -1] - ramp[0, 0]) <= 10.0 + 1e-4 and abs(ramp[0].mean()) < 1e-4


def test_a_key_fixes_the_outcome_and_off_changes_nothing():
  x, lengths = batch()
  settings = input_augment.InputAugment(time_masks=2, time_mask_width=5, freq_masks=2,
                                        freq_mask_width=3, gain_db=3.0, tilt_db=3.0)
  inv_std = np.ones(16, np.float32)
  first = input_augment.apply(jax.random.key(3), x, lengths, settings, inv_std)
  again = input_augment.apply(jax.random.key(3), x, lengths, settings, inv_std)
  other = input_augment.apply(jax.random.key(4), x, lengths, settings, inv_std)
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other)
  assert not input_augment.InputAugment().enabled
  np.testing.assert_array_equal(
      input_augment.apply(jax.random.key(3), x, lengths, input_augment.InputAugment()), x)


def test_a_run_with_augmentation_resumes_exactly(tone_manifest, tmp_path):
  config = tiny_run_config(tone_manifest, tmp_path)
  config.input_augment.update(time_masks=2, time_mask_width=8, freq_masks=1,
                              freq_mask_width=8, gain_db=3.0, tilt_db=3.0)
  first = assert_resumes_exactly(config, tmp_path)
  # The augmentation changed training: the loss differs from a plain run.
  config.input_augment.update(time_masks=0, freq_masks=0, gain_db=0.0, tilt_db=0.0)
  train.train_and_evaluate(config, str(tmp_path / 'plain'))
  assert first('plain')['loss'] != first('straight')['loss']
