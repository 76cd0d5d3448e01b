"""jaxser.audio: 16 kHz mono float32 out, and a clear error for each fault."""

import pickle

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


def test_errors_carry_their_fault_kind(tmp_path):
  y = np.zeros(100, np.float32)
  y[3] = np.inf
  cases = {
      tmp_path / 'gone.wav': 'missing file',
      tmp_path: 'missing file',
      write(tmp_path / 'empty.wav', np.zeros(0)): 'empty audio',
      write(tmp_path / 'inf.wav', y, subtype='FLOAT'): 'non-finite samples',
  }
  (tmp_path / 'junk.wav').write_bytes(b'not audio')
  cases[tmp_path / 'junk.wav'] = 'unreadable audio'
  for path, kind in cases.items():
    with pytest.raises(AudioError) as error:
      audio.load(path)
    assert error.value.kind == kind, path


def _cut(path, keep_fraction):
  data = path.read_bytes()
  path.write_bytes(data[:int(len(data) * keep_fraction)])
  return path


def test_truncated_wav_body_is_a_fault_with_the_counts(tmp_path):
  # A copy that stopped early: the header still declares 16000 samples.
  path = _cut(write(tmp_path / 'cut.wav', np.zeros(16000)), 1 / 3)
  present = (path.stat().st_size - 44) // 2
  assert sf.read(path)[0].shape == (present,)  # libsndfile says nothing
  assert audio.wav_truncation(path) == (16000, present)
  with pytest.raises(AudioError, match=rf'cut\.wav.*declares 16000 samples.*'
                     rf'holds {present}') as error:
    audio.load(path)
  assert error.value.kind == 'truncated audio'


def test_whole_and_streamed_wavs_are_not_truncated(tmp_path):
  whole = write(tmp_path / 'whole.wav', np.zeros((300, 2)), subtype='FLOAT')
  assert audio.wav_truncation(whole) is None
  flac = write(tmp_path / 'a.flac', np.zeros(300))
  assert audio.wav_truncation(flac) is None
  # A streaming writer's placeholder size means "unknown", not truncated.
  data = bytearray(write(tmp_path / 'stream.wav', np.zeros(300)).read_bytes())
  data[40:44] = (0xFFFFFFFF).to_bytes(4, 'little')
  (tmp_path / 'stream.wav').write_bytes(bytes(data))
  assert audio.wav_truncation(tmp_path / 'stream.wav') is None


def test_audio_error_pickles_with_its_kind():
  error = pickle.loads(pickle.dumps(AudioError('x.wav: gone', 'missing file')))
  assert (str(error), error.kind) == ('x.wav: gone', 'missing file')
