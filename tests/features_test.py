"""Parity of jaxser's features with the authors' librosa recipe, and their invariances."""

import warnings

import chex
import jax
import librosa
import numpy as np
import pytest

from jaxser import features
from jaxser import ops

SR = 16000


def librosa_power(y, pad_mode='constant'):
  return np.abs(librosa.stft(y, n_fft=1024, hop_length=160, win_length=640,
                             window='hamming', center=True, pad_mode=pad_mode)) ** 2


def librosa_features(y, kind, crop=None, pad_mode='constant'):
  """The authors' recipe; `crop` = (start, stop) frames kept before the dB."""
  power = librosa_power(y, pad_mode)
  if crop is not None:
    power = power[:, crop[0]:crop[1]]
  if kind == 'mel':
    mel = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=128)
    return librosa.power_to_db(mel @ power).T
  return librosa.power_to_db(power + 1e-8).T


def make_signals():
  rng = np.random.default_rng(0)
  t = np.arange(int(2.3 * SR)) / SR
  noise = 0.3 * rng.standard_normal(int(1.7 * SR))
  chirp = 0.5 * np.sin(2 * np.pi * (100 * t + 800 * t ** 2))
  harmonic = sum(0.2 / h * np.sin(2 * np.pi * 180 * h * t[:int(0.9 * SR)])
                 for h in range(1, 6))
  tone = 0.2 * np.sin(2 * np.pi * 220 * np.arange(9000) / SR) * np.hanning(9000)
  silence_both_ends = np.concatenate([np.zeros(4000), tone, np.zeros(5000)])
  return [s.astype(np.float32) for s in (noise, chirp, harmonic, silence_both_ends)]


def pad_batch(signals, extra=0):
  width = max(len(s) for s in signals) + extra
  batch = np.zeros((len(signals), width), np.float32)
  for i, s in enumerate(signals):
    batch[i, :len(s)] = s
  return batch, np.array([len(s) for s in signals], np.int32)


@pytest.mark.parametrize('kind', ['mel', 'stft'])
def test_parity_with_librosa_within_001_db(kind):
  signals = make_signals()
  batch, lengths = pad_batch(signals, extra=777)
  feats, frame_lengths = features.extract(batch, lengths, features.FeatureParams(kind=kind))
  feats, frame_lengths = np.asarray(feats), np.asarray(frame_lengths)
  assert feats.shape[-1] == (128 if kind == 'mel' else 513)
  for i, s in enumerate(signals):
    ref = librosa_features(s, kind)
    assert frame_lengths[i] == ref.shape[0] == 1 + len(s) // 160
    np.testing.assert_allclose(feats[i, :frame_lengths[i]], ref, rtol=0, atol=0.01)
    assert np.all(feats[i, frame_lengths[i]:] == 0.0)


@pytest.mark.parametrize('n_fft, hop_length, win_length, n_mels', [
    (512, 128, 400, 40),   # window not a multiple of the hop
    (256, 100, 256, 32),   # window as long as the FFT
    (1024, 160, 601, 64),  # odd window, centred half a sample off
])
def test_parity_with_librosa_for_other_stft_parameters(n_fft, hop_length, win_length, n_mels):
  signals = make_signals()[:3]
  batch, lengths = pad_batch(signals, extra=333)
  stft_kw = dict(n_fft=n_fft, hop_length=hop_length, win_length=win_length)
  mel, frame_lengths = features.log_mel(batch, lengths, n_mels=n_mels, **stft_kw)
  stft, _ = features.log_stft(batch, lengths, **stft_kw)
  bank = librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=n_mels)
  for i, s in enumerate(signals):
    power = np.abs(librosa.stft(s, window='hamming', center=True, **stft_kw)) ** 2
    n = int(frame_lengths[i])
    assert n == power.shape[1] == 1 + len(s) // hop_length
    np.testing.assert_allclose(np.asarray(mel[i, :n]), librosa.power_to_db(bank @ power).T,
                               rtol=0, atol=0.01)
    np.testing.assert_allclose(np.asarray(stft[i, :n]), librosa.power_to_db(power + 1e-8).T,
                               rtol=0, atol=0.01)


@pytest.mark.parametrize('n_fft, n_mels', [(1024, 128), (256, 128)])
def test_banded_filterbank_product_equals_the_dense_product(n_fft, n_mels):
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # (256, 128) has empty bands, on purpose.
    bank = features.mel_filterbank(features.FeatureParams(
        n_fft=n_fft, win_length=min(640, n_fft), n_mels=n_mels))
  power = np.random.default_rng(3).exponential(size=(2, 7, n_fft // 2 + 1)).astype(np.float32)
  out = np.asarray(ops.apply_filterbank(power, bank))
  np.testing.assert_allclose(out, power @ bank, rtol=1e-5, atol=1e-7)


def test_batches_of_any_size_match_one_utterance_at_a_time():
  # 7 rows of 3 s are 2 chunks of 4, the second with an empty row added.
  rng = np.random.default_rng(4)
  signals = [rng.standard_normal(int(SR * (2.5 + 0.07 * i))).astype(np.float32)
             for i in range(7)]
  batch, lengths = pad_batch(signals)
  together, _ = features.log_mel(batch, lengths)
  power, frame_lengths = features.power_spectrogram(batch, lengths)
  for i, s in enumerate(signals):
    alone, _ = features.log_mel(s[None], np.array([len(s)]))
    n = int(frame_lengths[i])
    np.testing.assert_allclose(np.asarray(together[i, :n]), np.asarray(alone[0]), atol=1e-4)
    assert np.all(np.asarray(power[i, n:]) == 0.0) and np.all(np.asarray(power[i, :n]) >= 0.0)


@pytest.mark.parametrize('fn', [features.log_mel, features.log_stft])
def test_padding_does_not_change_valid_frames(fn):
  signals = make_signals()
  short = signals[2]  # the shortest is padded by every other one
  alone, alone_len = fn(short[None], np.array([len(short)]))
  batch, lengths = pad_batch([signals[0], short, signals[1]], extra=5000)
  together, together_len = fn(batch, lengths)
  n = int(alone_len[0])
  assert int(together_len[1]) == n
  np.testing.assert_allclose(np.asarray(together[1, :n]), np.asarray(alone[0, :n]),
                             rtol=0, atol=1e-4)


def test_garbage_beyond_length_is_ignored():
  signals = make_signals()
  batch, lengths = pad_batch(signals)
  dirty = batch.copy()
  for i, n in enumerate(lengths):
    dirty[i, n:] = 1.0
  clean_out, _ = features.log_mel(batch, lengths)
  dirty_out, _ = features.log_mel(dirty, lengths)
  np.testing.assert_array_equal(np.asarray(clean_out), np.asarray(dirty_out))


def test_20_seconds_keeps_exactly_the_middle_1400_frames():
  rng = np.random.default_rng(1)
  n = 20 * SR
  # A level ramp makes every frame's content distinct, so an off-by-one shows.
  y = (rng.standard_normal(n) * np.linspace(0.01, 1.0, n)).astype(np.float32)
  total = 1 + n // 160  # 2001
  start = (total - 1400) // 2  # 300
  for kind in ('mel', 'stft'):
    feats, frame_lengths = features.extract(y[None], np.array([n]),
                                            features.FeatureParams(kind=kind))
    assert feats.shape[1] == 1400 and int(frame_lengths[0]) == 1400
    ref = librosa_features(y, kind, crop=(start, start + 1400))
    np.testing.assert_allclose(np.asarray(feats[0]), ref, rtol=0, atol=0.01)


def test_crop_in_a_batch_with_short_utterances():
  rng = np.random.default_rng(2)
  long = rng.standard_normal(15 * SR).astype(np.float32)
  short = rng.standard_normal(2 * SR).astype(np.float32)
  batch, lengths = pad_batch([short, long])
  feats, frame_lengths = features.log_mel(batch, lengths)
  assert feats.shape[1] == 1400
  assert list(np.asarray(frame_lengths)) == [1 + 2 * SR // 160, 1400]
  alone, _ = features.log_mel(long[None], np.array([len(long)]))
  np.testing.assert_allclose(np.asarray(feats[1]), np.asarray(alone[0]), atol=1e-4)


def test_frame_count_formula_and_params():
  assert features.num_frames(0, 160) == 1 and features.num_frames(159, 160) == 1
  assert features.num_frames(160, 160) == 2 and features.num_frames(64000, 160) == 401
  params = features.FeatureParams()
  np.testing.assert_array_equal(
      features.cropped_frames([100, 16000, 10 * SR, 30 * SR], params), [1, 101, 1001, 1400])
  assert params.num_bins == 128 and features.FeatureParams(kind='stft').num_bins == 513
  assert params.fingerprint() == features.FeatureParams().fingerprint()
  assert params.fingerprint() != features.FeatureParams(top_db=60.0).fingerprint()
  with pytest.raises(ValueError, match='kind'):
    features.FeatureParams(kind='mfcc')
  with pytest.raises(ValueError, match='top_db=nan: the dynamic range'):
    features.FeatureParams(top_db=float('nan'))


def test_log_mel_compiles_once_per_padded_shape():
  fn = chex.assert_max_traces(features.extract.__wrapped__, n=1)
  jitted = jax.jit(fn)
  rng = np.random.default_rng(3)
  for _ in range(3):
    batch = rng.standard_normal((2, 8000)).astype(np.float32)
    lengths = rng.integers(800, 8000, size=2).astype(np.int32)
    jax.block_until_ready(jitted(batch, lengths))


def test_extract_numpy_matches_batched_call():
  signals = make_signals()
  params = features.FeatureParams()
  listed = features.extract_numpy(signals, params, batch_size=3)
  for s, f in zip(signals, listed):
    direct, frame_lengths = features.extract(s[None], np.array([len(s)]), params)
    assert f.shape == (int(frame_lengths[0]), 128)
    np.testing.assert_allclose(f, np.asarray(direct[0]), atol=1e-4)
  # Batches run on two threads, or one: same arrays, in the input order.
  one_thread = features.extract_numpy(signals, params, batch_size=1, workers=1)
  two_threads = features.extract_numpy(signals, params, batch_size=1, workers=2)
  for a, b in zip(one_thread, two_threads):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match=r'waveforms\[1\] has shape \(2, 100\)'):
    features.extract_numpy([signals[0], np.zeros((2, 100))], params)



@pytest.mark.parametrize('kind', ['mel', 'stft'])
def test_crop_waveform_keeps_the_features_exactly_and_bounds_the_length(kind):
  params = features.FeatureParams(kind=kind)
  rng = np.random.default_rng(3)
  # Around the first length that is cut, and two long ones.
  for n in (1407 * 160 - 1, 1408 * 160 + 5, 1416 * 160, 95 * SR + 3):
    y = (0.1 * rng.standard_normal(n)).astype(np.float32)
    cut = features.crop_waveform(y, params)
    assert len(cut) <= (params.max_frames + 8) * params.hop_length
    whole, whole_len = features.extract(y[None], np.array([n]), params)
    part, part_len = features.extract(cut[None], np.array([len(cut)]), params)
    assert int(whole_len[0]) == int(part_len[0]) == params.max_frames
    np.testing.assert_array_equal(np.asarray(whole), np.asarray(part))


@pytest.mark.parametrize('kind', ['mel', 'stft'])
def test_reflect_padding_matches_librosa_within_001_db(kind):
  # The authors' librosa 0.6 reflected the signal at its ends; one signal
  # shorter than half a window reflects more than once, one is cropped.
  rng = np.random.default_rng(5)
  signals = [(0.3 * rng.standard_normal(n)).astype(np.float32)
             for n in (27000, 3000, 16001, 600, 230000)]
  batch, lengths = pad_batch(signals, extra=500)
  params = features.FeatureParams(kind=kind, pad_mode='reflect')
  feats, frame_lengths = map(np.asarray, features.extract(batch, lengths, params))
  listed = features.extract_numpy(signals, params, batch_size=2)
  for i, s in enumerate(signals):
    total = 1 + len(s) // 160
    start = max(total - 1400, 0) // 2
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')  # librosa: n_fft longer than 600 samples
      ref = librosa_features(s, kind, crop=(start, start + 1400), pad_mode='reflect')
    assert frame_lengths[i] == ref.shape[0]
    np.testing.assert_allclose(feats[i, :frame_lengths[i]], ref, rtol=0, atol=0.01)
    np.testing.assert_allclose(listed[i], ref, rtol=0, atol=0.01)
  # The edges differ from zero padding: the option is not a no-op.
  zeros, _ = features.extract(batch, lengths, features.FeatureParams(kind=kind))
  assert np.abs(np.asarray(zeros)[0, 0] - feats[0, 0]).max() > 0.1
