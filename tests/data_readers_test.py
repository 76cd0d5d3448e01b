"""Readers of every corpus layout, on tiny replicas with the real naming."""

import dataclasses
import pathlib

import numpy as np
import pytest
import soundfile as sf

from jaxser import data
from jaxser import protocols
from jaxser.data import fingerprint
from jaxser.data import records
from jaxser.errors import ConfigError
from jaxser.errors import CorpusError


def write_wav(path, seconds: float = 0.6, *, rate: int = 16000,
              channels: int = 1, seed: int = 0, subtype: str = 'PCM_16'):
  """A short noise burst; creates the folders."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  shape = (int(seconds * rate), channels) if channels > 1 else (int(seconds * rate),)
  sf.write(path, (0.1 * rng.standard_normal(shape)).astype(np.float32), rate,
           subtype=subtype)
  return path


def by_id(utterances):
  return {u.id: u for u in utterances}


# --------------------------------------------------------------------------
# IEMOCAP

_HEADER = '% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n'


def _block(start, end, utt, code):
  return (f'[{start:.4f} - {end:.4f}]\t{utt}\t{code}\t[2.5000, 3.0000, 2.5000]\n'
          'C-E2:\tNeutral state;\t()\n'
          'C-E3:\tFrustration;\t()\n'
          'A-E3:\tval 3; act 2; dom  2;\t()\n\n')


def _iemocap(root: pathlib.Path):
  labels = {
      'Session1': {
          'Ses01F_impro01': [('Ses01F_impro01_F000', 'neu'),
                             ('Ses01F_impro01_F001', 'xxx'),
                             ('Ses01F_impro01_M000', 'fru')],
          'Ses01F_script01_1': [('Ses01F_script01_1_F000', 'ang'),
                                ('Ses01F_script01_1_M000', 'exc'),
                                ('Ses01F_script01_1_M001', 'sad')],
      },
      'Session2': {
          'Ses02M_impro03': [('Ses02M_impro03_F000', 'hap'),
                             ('Ses02M_impro03_M000', 'neu')],
      },
  }
  for session, dialogs in labels.items():
    evaluation = root / session / 'dialog' / 'EmoEvaluation'
    for dialog, utts in dialogs.items():
      evaluation.mkdir(parents=True, exist_ok=True)
      text = _HEADER + ''.join(_block(2.0 * k, 2.0 * k + 1.5, u, c)
                               for k, (u, c) in enumerate(utts))
      (evaluation / f'{dialog}.txt').write_text(text)
      for utt, _ in utts:
        write_wav(root / session / 'sentences' / 'wav' / dialog / f'{utt}.wav')
  # Summary-like lines in the places the reader must not look: a reader that
  # recursed or read dot-files would find these extra ids.
  evaluation = root / 'Session1' / 'dialog' / 'EmoEvaluation'
  for sub in ('Attribute', 'Categorical', 'Self-evaluation'):
    (evaluation / sub).mkdir()
    (evaluation / sub / 'Ses01F_impro01_e1.txt').write_text(
        _block(0.0, 1.0, 'Ses01F_impro01_F009', 'ang')
        + 'Ses01F_impro01_F000 :Neutral state; ()\n')
  (evaluation / '._Ses01F_impro01.txt').write_text(
      _block(0.0, 1.0, 'Ses01F_impro01_F008', 'sad'))
  write_wav(root / 'Session1' / 'sentences' / 'wav' / 'Ses01F_impro01' /
            'Ses01F_impro01_F009.wav')


def test_iemocap_reads_summary_lines_only(tmp_path):
  _iemocap(tmp_path)
  utterances, summary = data.load_corpus('iemocap', tmp_path)
  got = by_id(utterances)
  assert sorted(got) == ['Ses01F_impro01_F000', 'Ses01F_script01_1_F000',
                         'Ses01F_script01_1_M000', 'Ses01F_script01_1_M001',
                         'Ses02M_impro03_F000', 'Ses02M_impro03_M000']
  assert {k: u.label for k, u in got.items()} == {
      'Ses01F_impro01_F000': 'neutral', 'Ses01F_script01_1_F000': 'angry',
      'Ses01F_script01_1_M000': 'excited', 'Ses01F_script01_1_M001': 'sad',
      'Ses02M_impro03_F000': 'happy', 'Ses02M_impro03_M000': 'neutral'}
  # The speaker is the session's actor of the utterance's gender letter, not
  # the dialog's (Ses02M_..._F000 is the female actor of session 2).
  assert {k: u.speaker for k, u in got.items()} == {
      'Ses01F_impro01_F000': 'Ses01F', 'Ses01F_script01_1_F000': 'Ses01F',
      'Ses01F_script01_1_M000': 'Ses01M', 'Ses01F_script01_1_M001': 'Ses01M',
      'Ses02M_impro03_F000': 'Ses02F', 'Ses02M_impro03_M000': 'Ses02M'}
  assert {k: u.gender for k, u in got.items()} == {
      'Ses01F_impro01_F000': 'F', 'Ses01F_script01_1_F000': 'F',
      'Ses01F_script01_1_M000': 'M', 'Ses01F_script01_1_M001': 'M',
      'Ses02M_impro03_F000': 'F', 'Ses02M_impro03_M000': 'M'}
  assert {k: u.improvised for k, u in got.items()} == {
      'Ses01F_impro01_F000': True, 'Ses01F_script01_1_F000': False,
      'Ses01F_script01_1_M000': False, 'Ses01F_script01_1_M001': False,
      'Ses02M_impro03_F000': True, 'Ses02M_impro03_M000': True}
  assert {u.session for u in utterances} == {'Ses01', 'Ses02'}
  assert got['Ses01F_script01_1_M000'].path == str(
      tmp_path / 'Session1' / 'sentences' / 'wav' / 'Ses01F_script01_1' /
      'Ses01F_script01_1_M000.wav')
  assert all(u.corpus == 'iemocap' for u in utterances)
  # Excited trains as happy; xxx and fru are outside the paper's classes.
  assert summary.by_class == {'neutral': 2, 'angry': 1, 'happy': 2, 'sad': 1}
  assert summary.by_label['excited'] == 1
  assert summary.by_session == {'Ses01': 4, 'Ses02': 2}
  assert summary.by_speaker == {'Ses01F': 2, 'Ses01M': 2, 'Ses02F': 1, 'Ses02M': 1}
  outside = [i for i in summary.skipped if i.kind == 'outside label map']
  assert sorted(pathlib.Path(i.path).stem for i in outside) == [
      'Ses01F_impro01_F001', 'Ses01F_impro01_M000']
  assert not summary.faults and not summary.notes
  np.testing.assert_array_equal(
      summary.label_map.indices(utterances[:1]), [0])  # neutral


def test_iemocap_other_label_maps(tmp_path):
  _iemocap(tmp_path)
  utterances, summary = data.load_corpus(
      'iemocap', tmp_path, label_map='neutral,frustrated,no_agreement,excited')
  assert summary.by_class == {'neutral': 2, 'frustrated': 1, 'no_agreement': 1,
                              'excited': 1}
  assert summary.count('outside label map') == 3  # angry, happy, sad
  assert summary.label_map.index('excited') == 3


def test_iemocap_wrong_root(tmp_path):
  with pytest.raises(CorpusError, match='Session1'):
    data.load_corpus('iemocap', tmp_path)


# --------------------------------------------------------------------------
# CREMA-D, RAVDESS, EmoDB, TESS


def test_crema_d(tmp_path):
  names = ['1001_DFA_ANG_XX', '1001_IEO_HAP_HI', '1002_TIE_SAD_LO',
           '1091_MTI_NEU_MD', '1091_ITS_DIS_XX', '1002_IWW_FEA_XX']
  for k, name in enumerate(names):
    write_wav(tmp_path / 'AudioWAV' / f'{name}.wav', seed=k)
  (tmp_path / 'VideoDemographics.csv').write_text(
      '"ActorID","Age","Sex","Race","Ethnicity"\n'
      '1001,51,"Male","Caucasian","Not Hispanic"\n'
      '1002,21,"Female","Caucasian","Not Hispanic"\n'
      '1091,29,"Female","Asian","Not Hispanic"\n')
  utterances, summary = data.load_corpus('crema_d', tmp_path)
  got = by_id(utterances)
  assert {k: (u.label, u.speaker, u.gender, u.session) for k, u in got.items()} == {
      '1001_DFA_ANG_XX': ('angry', '1001', 'M', '1001'),
      '1001_IEO_HAP_HI': ('happy', '1001', 'M', '1001'),
      '1002_TIE_SAD_LO': ('sad', '1002', 'F', '1002'),
      '1091_MTI_NEU_MD': ('neutral', '1091', 'F', '1091')}
  assert all(u.improvised is False and u.corpus == 'crema_d' for u in utterances)
  assert summary.count('outside label map') == 2  # disgust, fear
  six, summary = data.load_corpus(
      'crema_d', tmp_path / 'AudioWAV',
      label_map=['neutral', 'anger', 'happy', 'sad', 'fear', 'disgust'])
  assert len(six) == 6 and not summary.skipped
  assert by_id(six)['1002_IWW_FEA_XX'].label == 'fearful'
  assert by_id(six)['1002_IWW_FEA_XX'].gender == 'F'  # the CSV beside AudioWAV
  (tmp_path / 'VideoDemographics.csv').unlink()
  utterances, _ = data.load_corpus('crema_d', tmp_path)
  assert {u.gender for u in utterances} == {None}


def test_ravdess(tmp_path):
  names = ['Actor_01/03-01-01-01-01-01-01', 'Actor_01/03-01-02-01-01-01-01',
           'Actor_02/03-01-05-02-02-02-02', 'Actor_02/03-01-03-01-01-02-02',
           'Actor_12/03-01-04-01-02-01-12', 'Actor_12/03-01-08-02-02-01-12',
           'Actor_12/03-01-04-01-02-01-12_notes']
  for k, name in enumerate(names):
    write_wav(tmp_path / 'audio_speech_actors_01-24' / f'{name}.wav', seed=k)
  utterances, summary = data.load_corpus('ravdess', tmp_path)
  got = by_id(utterances)
  assert {k: (u.label, u.speaker, u.gender) for k, u in got.items()} == {
      '03-01-01-01-01-01-01': ('neutral', 'Actor_01', 'M'),
      '03-01-05-02-02-02-02': ('angry', 'Actor_02', 'F'),
      '03-01-03-01-01-02-02': ('happy', 'Actor_02', 'F'),
      '03-01-04-01-02-01-12': ('sad', 'Actor_12', 'F')}
  assert summary.by_session == {'Actor_01': 1, 'Actor_02': 2, 'Actor_12': 1}
  assert summary.count('outside label map') == 2  # calm, surprised
  assert [pathlib.Path(i.path).name for i in summary.faults] == [
      '03-01-04-01-02-01-12_notes.wav']
  assert summary.faults[0].kind == 'unrecognised name'


def test_emodb(tmp_path):
  names = ['03a01Fa', '08a02Wb', '09b03Tc', '10a04Na', '11b01La', '16a05Ed',
           '13a01Xa']
  for k, name in enumerate(names):
    write_wav(tmp_path / 'wav' / f'{name}.wav', seed=k)
  (tmp_path / 'wav' / 'README.txt').write_text('not audio')
  utterances, summary = data.load_corpus('emodb', tmp_path)
  got = by_id(utterances)
  assert {k: (u.label, u.speaker, u.gender, u.session) for k, u in got.items()} == {
      '03a01Fa': ('happy', '03', 'M', '03'),
      '08a02Wb': ('angry', '08', 'F', '08'),
      '09b03Tc': ('sad', '09', 'F', '09'),
      '10a04Na': ('neutral', '10', 'M', '10')}
  assert summary.count('outside label map') == 2  # boredom, disgust
  assert [(i.kind, pathlib.Path(i.path).name) for i in summary.faults] == [
      ('unknown label', '13a01Xa.wav')]


def test_tess_any_folder_casing(tmp_path):
  top = tmp_path / 'TESS Toronto emotional speech set data'
  names = ['OAF_angry/OAF_back_angry', 'OAF_Pleasant_surprise/OAF_bar_ps',
           'YAF_sad/YAF_chair_sad', 'yaf_neutral/YAF_dog_neutral',
           'YAF_happy/YAF_date_happy', 'OAF_Fear/OAF_base_fear',
           'OAF_Sad/oaf_bath_Sad']
  for k, name in enumerate(names):
    write_wav(top / f'{name}.wav', seed=k)
  utterances, summary = data.load_corpus('tess', tmp_path)
  got = by_id(utterances)
  assert {k: (u.label, u.speaker, u.gender) for k, u in got.items()} == {
      'OAF_back_angry': ('angry', 'OAF', 'F'),
      'YAF_chair_sad': ('sad', 'YAF', 'F'),
      'YAF_dog_neutral': ('neutral', 'YAF', 'F'),
      'YAF_date_happy': ('happy', 'YAF', 'F'),
      'oaf_bath_Sad': ('sad', 'OAF', 'F')}
  assert summary.by_session == {'OAF': 2, 'YAF': 3}
  assert summary.count('outside label map') == 2  # ps, fear


# --------------------------------------------------------------------------
# Manifest


def test_manifest_resolves_paths_against_its_folder(tmp_path):
  elsewhere = write_wav(tmp_path / 'elsewhere' / 'x.flac', seed=3)
  write_wav(tmp_path / 'corpus' / 'clips' / 'a.wav', seed=1)
  write_wav(tmp_path / 'corpus' / 'clips' / 'b.wav', seed=2)
  csv_path = tmp_path / 'corpus' / 'list.csv'
  csv_path.write_text(
      'path,label,speaker,session,gender,notes\n'
      'clips/a.wav,anger,spk1,s1,female,loud\n'
      f'{elsewhere},Neutral,spk2,s1,M,\n'
      'clips/b.wav,sad,,,,\n')
  utterances, summary = data.load_corpus('manifest', csv_path)
  assert [(u.id, u.label, u.speaker, u.session, u.gender) for u in utterances] == [
      ('clips/a', 'angry', 'spk1', 's1', 'F'),
      ('../elsewhere/x', 'neutral', 'spk2', 's1', 'M'),
      ('clips/b', 'sad', None, None, None)]
  assert utterances[0].path == str(tmp_path / 'corpus' / 'clips' / 'a.wav')
  assert utterances[1].path == str(elsewhere)
  assert all(u.corpus == 'manifest' and u.improvised is None for u in utterances)
  assert summary.by_class == {'neutral': 1, 'angry': 1, 'happy': 0, 'sad': 1}
  assert summary.by_speaker == {'?': 1, 'spk1': 1, 'spk2': 1}


def test_manifest_split_column_gives_the_given_protocol(tmp_path):
  for i in range(5):
    write_wav(tmp_path / f'{i}.wav', seed=i)
  (tmp_path / 'manifest.csv').write_text(
      'path,label,split\n0.wav,angry,train\n1.wav,sad,Valid\n2.wav,sad,test\n'
      '3.wav,neutral,train\n4.wav,happy,holdout\n')
  utterances, summary = data.load_corpus('manifest', tmp_path)
  assert [(u.id, u.split) for u in utterances] == [
      ('0', 'train'), ('1', 'dev'), ('2', 'test'), ('3', 'train')]
  (issue,) = summary.skipped
  assert issue.kind == 'bad manifest row' and "split 'holdout'" in issue.detail
  (split,) = protocols.make_folds('given', utterances, np.zeros(4, int), seed=0)
  assert (split.name, split.train.tolist(), split.dev.tolist(), split.test.tolist()) == (
      'given', [0, 3], [1], [2])
  # A corpus without the column: refused by name; its fingerprint is as before.
  plain = [dataclasses.replace(u, split=None) for u in utterances]
  with pytest.raises(ConfigError, match=r"protocol given \(a manifest's split "
                     r"column\) needs every utterance's split; 4 have none: 0, 1"):
    protocols.make_folds('given', plain, np.zeros(4, int), seed=0)
  hashes = {u.path: 'h' for u in utterances}
  assert (fingerprint.from_content_hashes(plain, hashes) !=
          fingerprint.from_content_hashes(utterances, hashes))


def test_manifest_needs_path_and_label(tmp_path):
  (tmp_path / 'manifest.csv').write_text('file,emotion\na.wav,angry\n')
  with pytest.raises(CorpusError, match='no path or label column'):
    data.load_corpus('manifest', tmp_path)


# --------------------------------------------------------------------------
# Entry point and label maps


def test_unknown_corpus_and_missing_root(tmp_path):
  with pytest.raises(ConfigError, match='unknown corpus'):
    data.load_corpus('librispeech', tmp_path)
  with pytest.raises(ConfigError, match='needs a root'):
    data.load_corpus('iemocap')
  with pytest.raises(CorpusError, match='does not exist'):
    data.load_corpus('emodb', tmp_path / 'nowhere')


def test_label_maps():
  paper = records.PAPER_4CLASS
  assert paper.classes == ('neutral', 'angry', 'happy', 'sad')
  assert [paper.index(l) for l in ('neutral', 'angry', 'happy', 'excited', 'sad',
                                   'frustrated')] == [0, 1, 2, 2, 3, None]
  assert records.get_label_map(None) is paper
  assert records.get_label_map('paper4') is paper
  assert records.get_label_map('neu, anger ,happiness').classes == (
      'neutral', 'angry', 'happy')
  with pytest.raises(ConfigError, match='not an emotion label'):
    records.get_label_map('neutral,angri')
  with pytest.raises(ConfigError, match='distinct'):
    records.LabelMap(('sad', 'sad'))
  with pytest.raises(ConfigError, match='not a class'):
    records.LabelMap(('sad',), merges=(('excited', 'happy'),))


def test_manifest_files_differing_only_in_suffix_keep_apart(tmp_path):
  # x.flac, x.ogg and x.wav would all default to id 'x' (two dropped as
  # duplicates); they keep their suffixes, other default ids stay as they were.
  for suffix, fmt in (('flac', 'FLAC'), ('ogg', 'OGG'), ('wav', 'WAV')):
    sf.write(tmp_path / f'x.{suffix}', np.full(8000, 0.1, np.float32) * (1 + len(suffix)),
             16000, format=fmt)
  write_wav(tmp_path / 'y.wav', seed=4)
  (tmp_path / 'manifest.csv').write_text(
      'path,label\nx.flac,angry\nx.ogg,sad\nx.wav,happy\ny.wav,neutral\n')
  utterances, summary = data.load_corpus('manifest', tmp_path / 'manifest.csv')
  assert [(u.id, u.label) for u in utterances] == [
      ('x.flac', 'angry'), ('x.ogg', 'sad'), ('x.wav', 'happy'), ('y', 'neutral')]
  assert not summary.faults
