"""A corpus holding every kind of bad input: reported, skipped or noted."""

import pathlib

from absl import logging
import numpy as np
import pytest
import soundfile as sf

from jaxser import data
from jaxser.errors import CorpusError
from data_readers_test import write_wav  # pylint: disable=g-bad-import-order


def _bad_corpus(root: pathlib.Path) -> pathlib.Path:
  """A manifest with two good rows and one row per fault or note."""
  write_wav(root / 'good_a.wav', 1.0, seed=1)
  write_wav(root / 'good_b.wav', 1.0, seed=2)
  (root / 'corrupt.wav').write_bytes(b'RIFF\x24\x00\x00\x00WAVEjunk' + bytes(40))
  sf.write(root / 'empty.wav', np.zeros(0, np.float32), 16000)
  samples = np.full(16000, 0.1, np.float32)
  samples[100] = np.nan
  samples[200] = np.inf
  sf.write(root / 'nan.wav', samples, 16000, subtype='FLOAT')
  write_wav(root / 'dup_first.wav', 1.0, seed=3)
  write_wav(root / 'dup_second.wav', 1.0, seed=4)
  write_wav(root / 'typo.wav', 1.0, seed=5)
  write_wav(root / 'calm.wav', 1.0, seed=6)
  write_wav(root / 'rate8k.wav', 1.0, rate=8000, seed=7)
  write_wav(root / 'stereo.wav', 1.0, channels=2, seed=8)
  write_wav(root / 'short.wav', 0.3, seed=9)
  write_wav(root / 'no_label.wav', 1.0, seed=10)
  whole = write_wav(root / 'truncated.wav', 1.0, seed=11).read_bytes()
  (root / 'truncated.wav').write_bytes(whole[:44 + 2 * 5000])  # 5000 of 16000
  csv_path = root / 'manifest.csv'
  csv_path.write_text(
      'id,path,label,speaker\n'
      'good_a,good_a.wav,neutral,s1\n'
      'good_b,good_b.wav,angry,s2\n'
      'missing,missing.wav,sad,s1\n'
      'corrupt,corrupt.wav,happy,s1\n'
      'empty,empty.wav,sad,s2\n'
      'nan,nan.wav,angry,s2\n'
      'dup,dup_first.wav,happy,s1\n'
      'dup,dup_second.wav,sad,s1\n'
      'typo,typo.wav,angri,s1\n'
      'calm,calm.wav,calm,s2\n'
      'rate8k,rate8k.wav,happy,s2\n'
      'stereo,stereo.wav,neutral,s1\n'
      'short,short.wav,sad,s2\n'
      'no_label,no_label.wav,,s1\n'
      'truncated,truncated.wav,sad,s2\n')
  return csv_path


FAULTS = {  # file -> kind
    'missing.wav': 'missing file',
    'corrupt.wav': 'unreadable audio',
    'truncated.wav': 'truncated audio',
    'empty.wav': 'empty audio',
    'nan.wav': 'non-finite samples',
    'dup_second.wav': 'duplicate id',
    'typo.wav': 'unknown label',
    'manifest.csv': 'bad manifest row',  # the row with no label
}
NOTES = {
    'rate8k.wav': 'resampled',
    'stereo.wav': 'mixed down',
    'short.wav': 'shorter than model minimum',
}


def test_summary_names_every_fault_and_keeps_the_valid(tmp_path):
  csv_path = _bad_corpus(tmp_path)
  utterances, summary = data.load_corpus('manifest', csv_path)
  assert [u.id for u in utterances] == ['good_a', 'good_b', 'dup', 'rate8k',
                                        'stereo', 'short']
  assert utterances[2].path.endswith('dup_first.wav')  # the first one wins
  assert {pathlib.Path(i.path).name: i.kind for i in summary.faults} == FAULTS
  assert [(pathlib.Path(i.path).name, i.kind) for i in summary.skipped
          if i.kind not in FAULTS.values()] == [('calm.wav', 'outside label map')]
  assert {pathlib.Path(i.path).name: i.kind for i in summary.notes} == NOTES
  assert "path 'no_label.wav'" in next(i.detail for i in summary.faults
                                        if i.kind == 'bad manifest row')
  assert 'dup_first.wav' in next(i.detail for i in summary.faults
                                 if i.kind == 'duplicate id')
  assert '2 NaN or Inf' in next(i.detail for i in summary.faults
                                if i.kind == 'non-finite samples')
  assert 'declares 16000 samples, the file holds 5000' in next(
      i.detail for i in summary.faults if i.kind == 'truncated audio')
  assert '31 frames' in next(i.detail for i in summary.notes
                             if i.kind == 'shorter than model minimum')
  text = summary.format(max_files=None)
  for name in list(FAULTS) + list(NOTES) + ['calm.wav']:
    assert name in text
  assert summary.by_class == {'neutral': 2, 'angry': 1, 'happy': 2, 'sad': 1}


def test_faults_are_logged_as_warnings(tmp_path, monkeypatch):
  warnings = []
  monkeypatch.setattr(logging, 'warning', lambda fmt, *a: warnings.append(fmt % a))
  data.load_corpus('manifest', _bad_corpus(tmp_path))
  assert len(warnings) == 1
  for name in FAULTS:
    assert name in warnings[0]


def test_strict_lists_every_offending_file(tmp_path):
  csv_path = _bad_corpus(tmp_path)
  with pytest.raises(CorpusError) as error:
    data.load_corpus('manifest', csv_path, strict=True)
  message = str(error.value)
  assert '8 broken entries' in message
  for name, kind in FAULTS.items():
    assert name in message and kind in message
  # Deliberate exclusions and notes are not faults.
  for name in ['calm.wav', *NOTES]:
    assert name not in message


def test_strict_passes_a_clean_corpus_with_notes(tmp_path):
  write_wav(tmp_path / 'a.wav', 1.0, rate=22050, channels=2)
  (tmp_path / 'manifest.csv').write_text('path,label\na.wav,happy\n')
  utterances, summary = data.load_corpus('manifest', tmp_path, strict=True)
  assert len(utterances) == 1
  assert sorted(i.kind for i in summary.notes) == ['mixed down', 'resampled']


def test_nothing_usable_is_an_error(tmp_path):
  (tmp_path / 'manifest.csv').write_text('path,label\nmissing.wav,sad\n')
  with pytest.raises(CorpusError, match='no usable utterance'):
    data.load_corpus('manifest', tmp_path)
