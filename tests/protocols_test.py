"""jaxser.protocols: disjoint parts, stratified subsets, sessions kept apart."""

import collections
import random

import hypothesis
from hypothesis import strategies as st
import numpy as np
import pytest

from jaxser import protocols
from jaxser.data.records import PAPER_4CLASS, Utterance
from jaxser.errors import ConfigError

CLASSES = PAPER_4CLASS.classes


def _utterance(uid, label, speaker, gender, session, improvised):
  return Utterance(id=uid, path=f'/x/{uid}.wav', label=label, speaker=speaker,
                   gender=gender, session=session, improvised=improvised,
                   corpus='fake')


def iemocap_like():
  """5 sessions x 2 speakers x impro/script x 4 classes, 2 to 24 a group."""
  utterances = []
  for s in range(1, 6):
    for g, gender in enumerate('FM'):
      for improvised in (True, False):
        for c, label in enumerate(CLASSES):
          count = 2 + (7 * s + 5 * g + 11 * improvised + 3 * c * c) % 23
          kind = 'impro' if improvised else 'script'
          for i in range(count):
            uid = f'Ses0{s}{gender}_{kind}0{c}_{gender}{i:03d}'
            utterances.append(_utterance(uid, label, f'Ses0{s}{gender}', gender,
                                         f'Ses0{s}', improvised))
  return utterances


def single_speaker_corpus(num_speakers=3):
  """CREMA-D-like: each speaker is its own session; classes of 1 to 6."""
  return [_utterance(f'{spk}_{label}_{i}', label, spk, None, spk, False)
          for spk in (f'10{k}' for k in range(num_speakers))
          for c, label in enumerate(CLASSES) for i in range(1 + (c + 2 * int(spk)) % 6)]


UTTS = iemocap_like()
LABELS = PAPER_4CLASS.indices(UTTS)


def _group_of(u, y):
  return (u.session, u.improvised, u.gender, int(y))


def _class_counts(split, labels, num_classes):
  """Utterances of each class in each part of `split`."""
  labels = np.asarray(labels, np.int64)
  return {part: np.bincount(labels[getattr(split, part)],
                            minlength=num_classes).tolist()
          for part in protocols.PARTS}


def _assert_partition(split, n):
  protocols.check_split(split, n)
  together = np.concatenate([split.train, split.dev, split.test])
  assert len(together) == n and set(together.tolist()) == set(range(n))


def test_iemocap_like_is_varied():
  sizes = collections.Counter(_group_of(u, y) for u, y in zip(UTTS, LABELS))
  assert len(sizes) == 80
  assert min(sizes.values()) < 10 < max(sizes.values())


def test_paper_subsets_keep_every_group_within_one():
  subsets = protocols.paper_subsets(UTTS, LABELS, seed=3)
  groups = collections.defaultdict(list)
  for u, y, s in zip(UTTS, LABELS, subsets):
    groups[_group_of(u, y)].append(s)
  for key, members in groups.items():
    counts = np.bincount(members, minlength=10)
    low, high = len(members) // 10, -(-len(members) // 10)
    assert counts.min() >= low and counts.max() <= high, (key, counts)
  # Hence each subset holds each class to within one utterance per group.
  for c in range(4):
    per_subset = np.bincount(subsets[LABELS == c], minlength=10)
    groups_of_c = sum(1 for key in groups if key[3] == c)
    assert np.ptp(per_subset) <= groups_of_c


def test_paper_folds_cover_everything_once():
  folds = protocols.paper_folds(UTTS, LABELS, seed=0)
  assert [f.name for f in folds] == [f'fold{k}' for k in range(5)]
  n = len(UTTS)
  for fold in folds:
    _assert_partition(fold, n)
    # 8 of 10 subsets train.
    assert abs(len(fold.train) - 0.8 * n) < 0.05 * n
  # Fold k's dev and test are subsets 2k and 2k+1: the test sets are
  # disjoint, and with the dev sets they hold out every utterance once.
  subsets = protocols.paper_subsets(UTTS, LABELS, seed=0)
  for k, fold in enumerate(folds):
    assert set(subsets[fold.dev]) == {2 * k}
    assert set(subsets[fold.test]) == {2 * k + 1}
  tests = np.concatenate([f.test for f in folds])
  devs = np.concatenate([f.dev for f in folds])
  assert len(np.unique(tests)) == len(tests) and len(np.unique(devs)) == len(devs)
  held_out = np.concatenate([tests, devs])
  assert sorted(held_out.tolist()) == list(range(n))
  # So every utterance trains in exactly 4 of the 5 folds.
  trained = np.bincount(np.concatenate([f.train for f in folds]), minlength=n)
  assert trained.tolist() == [4] * n


def test_paper_folds_deterministic_per_seed_and_differ_across_seeds():
  first = protocols.paper_folds(UTTS, LABELS, seed=7)
  again = protocols.paper_folds(UTTS, LABELS, seed=7)
  other = protocols.paper_folds(UTTS, LABELS, seed=8)
  for a, b in zip(first, again):
    for part in protocols.PARTS:
      np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
  assert any(not np.array_equal(a.test, b.test) for a, b in zip(first, other))


def test_paper_subsets_do_not_depend_on_list_order():
  order = list(range(len(UTTS)))
  random.Random(0).shuffle(order)
  shuffled = [UTTS[i] for i in order]
  subsets = protocols.paper_subsets(UTTS, LABELS, seed=5)
  shuffled_subsets = protocols.paper_subsets(shuffled, LABELS[order], seed=5)
  np.testing.assert_array_equal(shuffled_subsets, subsets[order])


def test_paper_groups_unknown_values_as_their_own():
  # Gender known for half, unknown (None) for the other half: 4 groups of 10.
  utts = [_utterance(f'u{i:02d}', CLASSES[i % 2], None, 'F' if i < 20 else None,
                     None, None) for i in range(40)]
  subsets = protocols.paper_subsets(utts, PAPER_4CLASS.indices(utts), seed=0)
  for start in (0, 1, 20, 21):
    group = subsets[start:start + 20:2]
    assert np.bincount(group, minlength=10).tolist() == [1] * 10


def test_leave_one_session_out_tests_both_speakers_of_every_session():
  folds = protocols.leave_one_session_out(UTTS, LABELS)
  # Two orders per session: 10 folds, dev F / test M first (the one order).
  assert [f.name for f in folds] == [f'Ses0{s}_test_Ses0{s}{g}'
                                     for s in range(1, 6) for g in 'MF']
  for fold in folds:
    _assert_partition(fold, len(UTTS))
    session, tested = fold.name.split('_test_')
    other = session + ('F' if tested.endswith('M') else 'M')
    assert session not in {UTTS[i].session for i in fold.train}
    assert {UTTS[i].speaker for i in fold.test} == {tested}
    assert {UTTS[i].speaker for i in fold.dev} == {other}
    held = [i for i, u in enumerate(UTTS) if u.session == session]
    assert sorted(np.concatenate([fold.dev, fold.test]).tolist()) == held
  # Every utterance of the corpus is tested exactly once, and devs once too.
  for part in ('test', 'dev'):
    every = np.concatenate([getattr(f, part) for f in folds])
    assert sorted(every.tolist()) == list(range(len(UTTS)))


def test_leave_one_session_out_one_order_is_the_first_of_each_session():
  both = protocols.leave_one_session_out(UTTS, LABELS)
  one = protocols.leave_one_session_out(UTTS, LABELS, orders='one')
  assert [f.name for f in one] == [f'Ses0{s}' for s in range(1, 6)]
  for fold, same in zip(one, both[::2]):
    assert {UTTS[i].speaker for i in fold.dev} == {fold.name + 'F'}
    for part in protocols.PARTS:
      np.testing.assert_array_equal(getattr(fold, part), getattr(same, part))
  # Half the corpus (the male speakers) is tested.
  tested = np.concatenate([f.test for f in one])
  assert {UTTS[i].gender for i in tested} == {'M'}
  with pytest.raises(ConfigError, match='loso_orders'):
    protocols.leave_one_session_out(UTTS, LABELS, orders='two')


def test_leave_one_session_out_three_speakers_each_tested_once():
  utts = [_utterance(f'{spk}_{c}_{i}', CLASSES[c], spk, 'F', session, True)
          for session, speakers in (('A', 'xyz'), ('B', 'uv'))
          for spk in speakers for c in range(4) for i in range(2)]
  labels = PAPER_4CLASS.indices(utts)
  folds = protocols.leave_one_session_out(utts, labels)
  assert [f.name for f in folds] == ['A_test_y', 'A_test_z', 'A_test_x',
                                     'B_test_v', 'B_test_u']
  every = np.concatenate([f.test for f in folds])
  assert sorted(every.tolist()) == list(range(len(utts)))
  assert {utts[i].speaker for i in folds[0].dev} == {'x', 'z'}


def test_leave_one_session_out_single_speaker_halves_each_class():
  utts = single_speaker_corpus()
  labels = PAPER_4CLASS.indices(utts)
  folds = protocols.leave_one_session_out(utts, labels)
  assert len(folds) == 6
  for fold in folds:
    _assert_partition(fold, len(utts))
    session, half = fold.name.split('_test_')
    held = [i for i, u in enumerate(utts) if u.session == session]
    assert sorted(np.concatenate([fold.dev, fold.test]).tolist()) == held
    first = fold.dev if half == 'half2' else fold.test
    for c in range(4):
      of_class = [i for i in held if labels[i] == c]
      first_half = sorted(of_class, key=lambda i: utts[i].id)[:len(of_class) // 2]
      assert sorted(i for i in first if labels[i] == c) == sorted(first_half)
  every = np.concatenate([f.test for f in folds])
  assert sorted(every.tolist()) == list(range(len(utts)))
  # Deterministic: no seed, the same folds every time.
  again = protocols.leave_one_session_out(utts, labels)
  assert all(np.array_equal(a.dev, b.dev) and np.array_equal(a.test, b.test)
             for a, b in zip(folds, again))


def test_leave_one_session_out_errors():
  no_session = UTTS[:3] + [_utterance('lost_one', 'sad', 'x', 'F', None, True)]
  with pytest.raises(ConfigError, match='lost_one'):
    protocols.leave_one_session_out(no_session)
  one_session = [u for u in UTTS if u.session == 'Ses01']
  with pytest.raises(ConfigError, match='at least 2 sessions'):
    protocols.leave_one_session_out(one_session)


def test_random_split_is_stratified_and_seeded():
  (split,) = protocols.random_split(UTTS, LABELS, seed=1)
  _assert_partition(split, len(UTTS))
  counts = _class_counts(split, LABELS, 4)
  for c in range(4):
    total = int(np.sum(LABELS == c))
    assert abs(counts['train'][c] - 0.8 * total) <= 1
    assert abs(counts['dev'][c] - 0.1 * total) <= 1
  (same,) = protocols.random_split(UTTS, LABELS, seed=1)
  (other,) = protocols.random_split(UTTS, LABELS, seed=2)
  np.testing.assert_array_equal(split.test, same.test)
  assert not np.array_equal(split.test, other.test)


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(sizes=st.lists(st.integers(0, 30), min_size=2, max_size=4),
                  seed=st.integers(0, 2**31 - 1))
def test_random_split_partitions_any_class_sizes(sizes, seed):
  utts = [_utterance(f'{c}_{i}', CLASSES[c], 's', 'F', 's', True)
          for c, size in enumerate(sizes) for i in range(size)]
  labels = PAPER_4CLASS.indices(utts)
  (split,) = protocols.random_split(utts, labels, seed=seed,
                                    fractions=(0.6, 0.2, 0.2))
  _assert_partition(split, len(utts))
  for c, size in enumerate(sizes):
    assert abs(_class_counts(split, labels, 4)['test'][c] - 0.2 * size) <= 1


def test_make_folds_dispatches_and_checks():
  assert protocols.PROTOCOLS == ('paper', 'loso', 'random', 'given')
  assert len(protocols.make_folds('paper', UTTS, LABELS, seed=0)) == 5
  assert len(protocols.make_folds('loso', UTTS, LABELS, seed=0)) == 10
  assert len(protocols.make_folds('loso', UTTS, LABELS, seed=0, orders='one')) == 5
  assert len(protocols.make_folds('random', UTTS, LABELS, seed=0,
                                  fractions=(0.5, 0.25, 0.25))) == 1
  with pytest.raises(ConfigError, match='protocol'):
    protocols.make_folds('kfold', UTTS, LABELS, seed=0)
  # Too few utterances: some fold would test nothing.
  with pytest.raises(ConfigError, match='fold'):
    protocols.make_folds('paper', UTTS[:4], LABELS[:4], seed=0)


def test_bad_arguments_raise():
  with pytest.raises(ConfigError, match='num_folds'):
    protocols.paper_folds(UTTS, LABELS, seed=0, num_folds=6)
  with pytest.raises(ConfigError, match='seed'):
    protocols.paper_folds(UTTS, LABELS, seed=None)
  with pytest.raises(ConfigError, match='fractions'):
    protocols.random_split(UTTS, LABELS, seed=0, fractions=(0.8, 0.3, 0.1))
  with pytest.raises(ValueError, match='one class index per utterance'):
    protocols.paper_folds(UTTS, LABELS[:-1], seed=0)


def test_check_split_rejects_overlap_and_bad_indices():
  ok = protocols.Split('ok', np.array([0, 2]), np.array([1]), np.array([3]))
  protocols.check_split(ok, 4)
  with pytest.raises(ValueError, match='two parts'):
    protocols.check_split(ok._replace(test=np.array([2, 3])), 4)
  with pytest.raises(ValueError, match='outside'):
    protocols.check_split(ok, 3)
  with pytest.raises(ValueError, match='sorted'):
    protocols.check_split(ok._replace(train=np.array([2, 0])), 4)

