"""jaxser.wave_augment: padding untouched, valid samples changed as specified
(hand cases: an SNR, a sine's frequency, a room's decay), a key fixes it."""

import jax
import numpy as np
import pytest

from jaxser import wave_augment

RATE = 16000


def batch(samples=16000):
  rng = np.random.default_rng(0)
  lengths = np.array([16000, 9000, 12345, 4000], np.int32)
  t = np.arange(samples) / RATE
  x = np.stack([np.sin(2 * np.pi * f * t) * 0.3 for f in (220.0, 330.0, 440.0, 550.0)])
  x = (x + 0.01 * rng.standard_normal(x.shape)).astype(np.float32)
  for row, length in enumerate(lengths):
    x[row, length:] = 0.0
  return x, lengths


def power(x):
  return float(np.mean(np.square(x)))


@pytest.mark.parametrize('kind', ['white', 'pink', 'babble'])
def test_noise_at_the_drawn_snr_and_padding_untouched(kind):
  x, lengths = batch()
  out = np.asarray(wave_augment.add_noise(jax.random.key(0), x, lengths, snr_db=(10.0, 10.0),
                                          kinds=(kind,)))
  for row, length in enumerate(lengths):
    assert np.all(out[row, length:] == 0)
    noise = out[row, :length] - x[row, :length]
    snr = 10 * np.log10(power(x[row, :length]) / power(noise))
    assert snr == pytest.approx(10.0, abs=0.05), (kind, row, snr)
  again = wave_augment.add_noise(jax.random.key(0), x, lengths, snr_db=(10.0, 10.0),
                                 kinds=(kind,))
  np.testing.assert_array_equal(out, again)
  with pytest.raises(ValueError, match='noise kind'):
    wave_augment.add_noise(jax.random.key(0), x, lengths, kinds=('brown',))


def zero_crossings_per_second(x):
  return np.sum(np.abs(np.diff(np.signbit(x).astype(int)))) / 2 / (len(x) / RATE)


@pytest.mark.parametrize('factor', [0.9, 1.0, 1.1])
def test_speed_scales_frequency_and_length(factor):
  x, lengths = batch()
  out, new_lengths = wave_augment.speed_perturb(jax.random.key(1), x, lengths,
                                                factors=(factor,))
  out, new_lengths = np.asarray(out), np.asarray(new_lengths)
  expected = np.minimum(np.floor((lengths - 1) / np.float32(factor)).astype(int) + 1, 16000)
  np.testing.assert_array_equal(new_lengths, expected)
  if factor == 1.0:
    np.testing.assert_allclose(out, x, atol=1e-6)
  for row, length in enumerate(new_lengths):
    assert np.all(out[row, length:] == 0)
    base = zero_crossings_per_second(x[row, :lengths[row]])
    assert zero_crossings_per_second(out[row, :length]) == pytest.approx(
        base * factor, rel=0.03)


def test_reverberation_keeps_power_and_decays():
  x, lengths = batch()
  out = np.asarray(wave_augment.reverberate(jax.random.key(2), x, lengths, rt60_s=(0.4, 0.4)))
  for row, length in enumerate(lengths):
    assert np.all(out[row, length:] == 0)
    assert power(out[row, :length]) == pytest.approx(power(x[row, :length]), rel=1e-3)
    assert not np.allclose(out[row, :length], x[row, :length], atol=1e-3)
  # An impulse: the tail decays by 60 dB per RT60, 15 dB over 0.1 s at 0.4 s.
  impulse = np.zeros((1, 16000), np.float32)
  impulse[0, 0] = 1.0
  response = np.asarray(wave_augment.reverberate(jax.random.key(3), impulse,
                                                 np.array([16000]), rt60_s=(0.4, 0.4)))[0]
  early = power(response[800:1600])
  late = power(response[2400:3200])
  assert 10 * np.log10(early / late) == pytest.approx(60 * 0.1 / 0.4, abs=3.0)
  off = wave_augment.reverberate(jax.random.key(2), x, lengths, probability=0.0)
  np.testing.assert_array_equal(np.asarray(off), x)
