"""The synthesised demo corpus: reproducible, rule-following, overlapping."""

import collections
import itertools
import pathlib

import librosa
import numpy as np
import pytest
import soundfile as sf

from jaxser import data
from jaxser.data import demo
from jaxser.data import demo_synthesis

SIZE = 120  # 37 neutral, 24 angry, 35 happy, 24 sad


@pytest.fixture(scope='module')
def corpus_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp('demo')
  demo.build_demo_corpus(out, num_utterances=SIZE, seed=0)
  return out


@pytest.fixture(scope='module')
def corpus(corpus_dir):
  return data.load_corpus('demo', corpus_dir, num_utterances=SIZE, seed=0)


def _files(folder: pathlib.Path) -> dict[str, bytes]:
  return {str(p.relative_to(folder)): p.read_bytes()
          for p in sorted(folder.rglob('*')) if p.is_file()}


def test_same_seed_same_bytes(corpus_dir, tmp_path):
  again = demo.build_demo_corpus(tmp_path, num_utterances=SIZE, seed=0, workers=1)
  first = next(corpus_dir.glob('demo-*'))
  assert again.parent.name == first.name
  expected, got = _files(first), _files(again.parent)
  assert len(expected) == SIZE + 2  # wavs, manifest.csv, params.json
  assert expected.keys() == got.keys()
  assert [k for k in expected if expected[k] != got[k]] == []
  other = demo.build_demo_corpus(tmp_path, num_utterances=SIZE, seed=1)
  assert other.parent != again.parent
  assert other.read_bytes() != again.read_bytes()


def test_existing_corpus_is_reused_and_half_ones_are_not(corpus_dir, monkeypatch):
  final = next(corpus_dir.glob('demo-*'))
  stamp = {p: p.stat().st_mtime_ns for p in final.rglob('*')}
  monkeypatch.setattr(demo, '_render', lambda *a: pytest.fail('re-rendered'))
  assert demo.build_demo_corpus(corpus_dir, num_utterances=SIZE, seed=0) == (
      final / 'manifest.csv')
  assert stamp == {p: p.stat().st_mtime_ns for p in final.rglob('*')}


def test_interrupted_builds_leave_nothing_that_passes(tmp_path):
  size = 8
  name = demo.build_demo_corpus(tmp_path, num_utterances=size).parent.name
  # A killed build leaves its temporary folder; a folder without params.json
  # (not written by the builder) is not a corpus either.
  abandoned = tmp_path / f'.tmp-{name}-999999999'
  abandoned.mkdir()
  (tmp_path / name / 'params.json').unlink()
  path = demo.build_demo_corpus(tmp_path, num_utterances=size)
  assert (path.parent / 'params.json').is_file()
  assert len(list((path.parent / 'wav').glob('*.wav'))) == size
  assert not abandoned.exists()
  assert [p.name for p in tmp_path.iterdir()] == [name]


def test_reads_back_through_the_manifest(corpus):
  utterances, summary = corpus
  assert len(utterances) == SIZE and not summary.skipped and not summary.notes
  assert summary.by_class == demo_synthesis.class_counts(SIZE) == {
      'neutral': 37, 'angry': 24, 'happy': 35, 'sad': 24}
  assert {u.corpus for u in utterances} == {'demo'}
  assert {u.improvised for u in utterances} == {False}
  speakers = collections.defaultdict(set)
  for u in utterances:
    speakers[u.session].add((u.speaker, u.gender))
  # Five sessions of one male and one female voice: leave-one-session-out
  # can hold one speaker out for dev and the other for test.
  assert len(speakers) == 5
  assert all(sorted(g for _, g in pair) == ['F', 'M'] for pair in speakers.values())
  assert len(summary.by_speaker) == 10
  assert min(summary.by_speaker.values()) >= SIZE // 10 - 2
  info = sf.info(utterances[0].path)
  assert (info.samplerate, info.channels, info.subtype) == (16000, 1, 'PCM_16')


def test_recipe_sizes():
  assert len(set(demo_synthesis.SENTENCES)) >= 40
  assert len({voice for _, male, female in demo_synthesis.SESSIONS for voice in (male, female)}) >= 8
  counts = demo_synthesis.class_counts(5531)
  assert counts == {'neutral': 1708, 'angry': 1103, 'happy': 1636, 'sad': 1084}
  assert sum(demo_synthesis.class_counts(803).values()) == 803


def _statistics(path: str) -> tuple[float, float, float]:
  """Duration (s), RMS level (dB) and median pitch of voiced frames (Hz)."""
  x, rate = sf.read(path, dtype='float32')
  f0 = librosa.yin(x, fmin=60, fmax=500, sr=rate, frame_length=1024, hop_length=320)
  energy = librosa.feature.rms(y=x, frame_length=1024, hop_length=320)[0][:len(f0)]
  voiced = energy > 0.3 * energy.max()
  return (len(x) / rate, 20 * np.log10(np.sqrt(np.mean(x ** 2))),
          float(np.median(f0[voiced])))


def _best_threshold_accuracy(a: np.ndarray, b: np.ndarray) -> float:
  """Balanced accuracy of the best single threshold between two samples."""
  values = np.concatenate([a, b])
  is_b = np.r_[np.zeros(len(a), bool), np.ones(len(b), bool)]
  best = 0.0
  for threshold in values:
    above = values >= threshold
    accuracy = 0.5 * (above[is_b].mean() + (~above[~is_b]).mean())
    best = max(best, accuracy, 1.0 - accuracy)
  return best


def test_prosody_follows_the_rules_and_classes_overlap(corpus):
  utterances, _ = corpus
  stats = collections.defaultdict(list)
  for u in utterances:
    stats[u.label].append(_statistics(u.path))
  stats = {label: np.array(rows) for label, rows in stats.items()}
  mean = {label: rows.mean(axis=0) for label, rows in stats.items()}
  duration, level, pitch = 0, 1, 2
  # Murray & Arnott 1993 / Schroeder 2001, relative to neutral: angry and
  # happy faster, louder, higher; sad slower, softer, lower.
  for label in ('angry', 'happy'):
    assert mean[label][duration] < mean['neutral'][duration], label
    assert mean[label][level] > mean['neutral'][level] + 1.0, label
    assert mean[label][pitch] > mean['neutral'][pitch] * 1.1, label
  assert mean['sad'][duration] > mean['neutral'][duration] * 1.1
  assert mean['sad'][level] < mean['neutral'][level] - 1.0
  assert mean['sad'][pitch] < mean['neutral'][pitch] * 0.95
  # No single global statistic separates any two classes.
  for stat, (a, b) in itertools.product(range(3), itertools.combinations(stats, 2)):
    accuracy = _best_threshold_accuracy(stats[a][:, stat], stats[b][:, stat])
    assert accuracy < 0.93, (stat, a, b, accuracy)


def test_v2_and_ood_recipes_vary_the_voices_and_channels(tmp_path):
  from jaxser.data import demo_recipes  # pylint: disable=g-import-not-at-top
  voices = {r: {v for s in demo_recipes.RECIPES[r].sessions for v in s[1:]}
            for r in demo_recipes.RECIPES}
  accents = lambda r: {v.split('+')[0] for v in voices[r]}
  variants = lambda r: {v.split('+')[1] for v in voices[r]}
  assert len(accents('v2')) > len(accents('v1'))  # more voices and variants
  # The out-of-domain voices: accents and variants no training recipe uses.
  assert not accents('ood') & (accents('v1') | accents('v2'))
  assert not variants('ood') & (variants('v1') | variants('v2'))
  # Its channels lie outside v2's ranges.
  train, ood = demo_recipes.TRAIN_CHANNEL, demo_recipes.OOD_CHANNEL
  assert ood.highpass_hz[0] > train.highpass_hz[1] and ood.lowpass_hz[1] < train.lowpass_hz[0]
  assert ood.snr_db[1] < train.snr_db[0] and not set(ood.noises) & set(train.noises)
  # v1 is the first corpus, byte for byte: no channel, and its specs unchanged.
  assert all(s.channel is None for s in demo_synthesis.plan(40, 0))
  assert demo_synthesis.plan(40, 0) == demo_synthesis.plan(40, 0, 'v1')
  for recipe in ('v2', 'ood'):
    specs = demo_synthesis.plan(24, 0, recipe)
    assert specs == demo_synthesis.plan(24, 0, recipe)  # a seed fixes it
    assert len({s.channel for s in specs}) == 24 and {s.voice for s in specs} <= voices[recipe]
    path = demo.build_demo_corpus(tmp_path, num_utterances=24, seed=0, recipe=recipe,
                                  workers=1)
    assert path.parent.name.startswith(f'demo-{recipe}-n24-seed0-')
    utterances, _ = data.load_corpus('demo', tmp_path, num_utterances=24, seed=0,
                                     recipe=recipe)
    assert len(utterances) == 24
    again = tmp_path / 'again'
    demo.build_demo_corpus(again, num_utterances=24, seed=0, recipe=recipe, workers=2)
    for wav in sorted((path.parent / 'wav').iterdir()):
      assert wav.read_bytes() == (next(again.iterdir()) / 'wav' / wav.name).read_bytes()
