"""jaxser.audio: 16 kHz mono float32 out, and a clear error for each fault."""

import numpy as np
import pytest
import soundfile as sf

from jaxser import audio
from jaxser.errors import AudioError


def write(path, data, rate=16000, subtype='PCM_16'):
  sf.write(str(path), data, rate, subtype=subtype)
  return path


def test_loads_16k_mono_float32(tmp_path):
  y = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
  out = audio.load(write(tmp_path / 'a.wav', y))
  assert out.dtype == np.float32 and out.shape == (16000,)
  np.testing.assert_allclose(out, y, atol=1e-4)


def test_stereo_is_mixed_down(tmp_path):
  left = np.full(800, 0.5)
  right = np.full(800, -0.25)
  out = audio.load(write(tmp_path / 's.wav', np.stack([left, right], 1)))
  assert out.shape == (800,)
  np.testing.assert_allclose(out, 0.125, atol=1e-4)


def test_other_rates_are_resampled(tmp_path):
  rate = 22050
  y = 0.3 * np.sin(2 * np.pi * 300 * np.arange(rate) / rate)
  out = audio.load(write(tmp_path / 'r.wav', y, rate=rate))
  assert abs(len(out) - 16000) <= 1
  # The tone stays at 300 Hz.
  spectrum = np.abs(np.fft.rfft(out[:16000]))
  assert abs(np.argmax(spectrum) * 16000 / 16000 - 300) <= 1


def test_missing_file_is_named(tmp_path):
  path = tmp_path / 'nothere.wav'
  with pytest.raises(AudioError, match=r'nothere\.wav.*does not exist'):
    audio.load(path)


def test_unreadable_file_is_named(tmp_path):
  path = tmp_path / 'garbage.wav'
  path.write_bytes(b'RIFF\x00\x00\x00\x00not really a wave file at all')
  with pytest.raises(AudioError, match=r'garbage\.wav.*unreadable'):
    audio.load(path)


def test_directory_is_not_audio(tmp_path):
  with pytest.raises(AudioError, match='not a regular file'):
    audio.load(tmp_path)


def test_empty_file_is_named(tmp_path):
  path = write(tmp_path / 'empty.wav', np.zeros(0))
  with pytest.raises(AudioError, match=r'empty\.wav.*empty'):
    audio.load(path)


def test_non_finite_samples_are_named(tmp_path):
  y = np.zeros(1000, np.float32)
  y[10] = np.nan
  y[20] = np.inf
  path = write(tmp_path / 'nan.wav', y, subtype='FLOAT')
  with pytest.raises(AudioError, match=r'nan\.wav.*2 non-finite'):
    audio.load(path)
