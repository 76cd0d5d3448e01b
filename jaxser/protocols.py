"""Evaluation protocols: which utterances train, select (dev) and test.

Each protocol is a pure function of the utterance list and the utterances'
class indices (and of a seed where it draws), returning a list of `Split`s:
sorted indices into that list, one `Split` per fold.

- 'paper' (`paper_folds`, the authors' code): 10 stratified subsets; fold k
  uses subset 2k as dev, 2k+1 as test, the other 8 to train.
  Speaker-dependent.
- 'loso' (`leave_one_session_out`): the held-out session's speakers are
  split into dev and test, in both orders (the authors' runs) or one.
- 'random' (`random_split`): one split, stratified by class (80/10/10 by
  default, as the SpeechBrain IEMOCAP recipes).
- 'given' (`given_split`): the corpus' own split (a manifest's `split`
  column), so published splits are reproduced as they are.

Everything that draws sorts by utterance id first, so a split depends on the
utterances and the seed, not on the order of the list. `make_folds` is the one
entry point the trainer calls; it also checks every fold with `check_split`.
"""

import collections
import numbers
from typing import NamedTuple, Sequence

import numpy as np

from jaxser.data.records import Utterance
from jaxser.errors import ConfigError

__all__ = ['LOSO_ORDERS', 'PARTS', 'PROTOCOLS', 'Split', 'check_split',
           'given_split', 'leave_one_session_out', 'make_folds', 'paper_folds',
           'paper_subsets', 'random_split']

PROTOCOLS = ('paper', 'loso', 'random', 'given')
LOSO_ORDERS = ('both', 'one')
PARTS = ('train', 'dev', 'test')


class Split(NamedTuple):
  """One fold of a protocol.

  Attributes:
    name: the fold's name, unique within its protocol ('fold0', a session
      name, 'random'); usable as a folder name.
    train: `[n_train]` sorted int64 indices into the utterance list.
    dev: `[n_dev]` sorted int64 indices; selects the checkpoint.
    test: `[n_test]` sorted int64 indices; reported.
  """
  name: str
  train: np.ndarray
  dev: np.ndarray
  test: np.ndarray


# --------------------------------------------------------------------------
# Shared helpers.


def _labels(utterances: Sequence[Utterance], labels) -> np.ndarray:
  """`labels` as `[n]` int64, checked against the utterance list."""
  labels = np.asarray(labels)
  if labels.shape != (len(utterances),):
    raise ValueError(f'labels has shape {labels.shape}, expected '
                     f'({len(utterances)},): one class index per utterance')
  if len(labels) and not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'labels must be integer class indices, got {labels.dtype}')
  return labels.astype(np.int64)


def _rng(seed) -> np.random.Generator:
  # A None seed would silently give a different split on every call.
  if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
    raise ConfigError(f'protocol seed must be an int, got {seed!r}')
  return np.random.default_rng(int(seed))


def _order_key(value) -> tuple:
  """A total order over group values that may be None (None sorts last)."""
  return (value is None, str(value))


def _groups(keys: Sequence[tuple], ids: Sequence[str]) -> list[np.ndarray]:
  """Positions grouped by equal key.

  Args:
    keys: one hashable tuple per item.
    ids: one id per item; orders the items within a group.

  Returns:
    One int64 array of positions per distinct key, groups in sorted key order
    and each group sorted by id, so the result does not depend on the order
    of the items.
  """
  members = collections.defaultdict(list)
  for position, key in enumerate(keys):
    members[key].append(position)
  ordered = sorted(members, key=lambda key: tuple(map(_order_key, key)))
  return [np.asarray(sorted(members[key], key=lambda p: (ids[p], p)), np.int64)
          for key in ordered]


def _split(name: str, num: int, dev, test) -> Split:
  """A `Split` whose train part is everything not in `dev` or `test`."""
  dev = np.unique(np.asarray(dev, np.int64))
  test = np.unique(np.asarray(test, np.int64))
  train = np.setdiff1d(np.arange(num, dtype=np.int64),
                       np.concatenate([dev, test]))
  return Split(name, train, dev, test)


# --------------------------------------------------------------------------
# The protocols.


def paper_subsets(utterances: Sequence[Utterance], labels, *, seed: int,
                  num_subsets: int = 10) -> np.ndarray:
  """The paper protocol's subset of each utterance (the authors' code).

  Within each group of (session, improvised, gender, class) the utterances
  are sorted by id, permuted by the seeded generator and dealt round-robin
  into `num_subsets` subsets, starting from a random subset. A group of n
  utterances thus puts floor(n / num_subsets) or ceil(n / num_subsets) into
  every subset. Unknown values (None) are a group value like any other.

  (The authors grouped by the raw IEMOCAP label, dealing excited and happy
  apart; here the group is the training class.)

  Args:
    utterances: the corpus, `n` records.
    labels: `[n]` class indices.
    seed: the generator seed; the same seed gives the same subsets.
    num_subsets: how many subsets.

  Returns:
    `[n]` int64 subset index of each utterance, in `[0, num_subsets)`.
  """
  labels = _labels(utterances, labels)
  if num_subsets < 1:
    raise ConfigError(f'paper protocol: num_subsets must be >= 1, got {num_subsets}')
  rng = _rng(seed)
  keys = [(u.session, u.improvised, u.gender, int(y))
          for u, y in zip(utterances, labels)]
  subsets = np.zeros(len(utterances), np.int64)
  for members in _groups(keys, [u.id for u in utterances]):
    dealt = members[rng.permutation(len(members))]
    start = rng.integers(num_subsets)
    subsets[dealt] = (start + np.arange(len(dealt))) % num_subsets
  return subsets


def paper_folds(utterances: Sequence[Utterance], labels, *, seed: int,
                num_subsets: int = 10, num_folds: int = 5) -> list[Split]:
  """The paper's protocol: fold k has subset 2k as dev and 2k+1 as test.

  The other subsets train. With the defaults (10 subsets, 5 folds) the test
  sets of the folds together hold every utterance exactly once, and so do
  the dev sets.

  Args:
    utterances: the corpus, `n` records.
    labels: `[n]` class indices.
    seed: the seed of `paper_subsets`; repeat with several seeds.
    num_subsets: how many subsets (`paper_subsets`).
    num_folds: how many folds; `2 * num_folds <= num_subsets`.

  Returns:
    `num_folds` splits named 'fold0', 'fold1', ...

  Raises:
    ConfigError: the fold and subset counts do not fit together.
  """
  if num_folds < 1 or 2 * num_folds > num_subsets or num_subsets < 3:
    raise ConfigError(
        f'paper protocol: need num_folds >= 1, num_subsets >= 3 and '
        f'2 * num_folds <= num_subsets; got num_folds={num_folds}, '
        f'num_subsets={num_subsets}')
  subsets = paper_subsets(utterances, labels, seed=seed, num_subsets=num_subsets)
  return [_split(f'fold{k}', len(utterances), np.flatnonzero(subsets == 2 * k),
                 np.flatnonzero(subsets == 2 * k + 1))
          for k in range(num_folds)]


def _session_parts(utterances: Sequence[Utterance], labels: np.ndarray,
                   held: np.ndarray) -> list[tuple[str, np.ndarray]]:
  """A held-out session's parts, each tested once (`leave_one_session_out`).

  A session of a single speaker (corpora whose session is the speaker, such
  as CREMA-D) is split per class: each class's utterances, sorted by id,
  give their first half (rounded down) to one part, the rest to the other.
  Without labels the session is one class.

  Returns:
    `(name, indices)` per part: one per speaker, speakers in sorted order (a
    None speaker last); for a single-speaker session, the halves of each
    class ('half1': the first half by id, rounded down; 'half2': the rest).
  """
  speakers = [utterances[i].speaker for i in held]
  names = sorted(set(speakers), key=_order_key)
  if len(names) >= 2:
    return [(str(name), held[[s == name for s in speakers]]) for name in names]
  first = []
  for members in _groups([(int(labels[i]),) for i in held],
                         [utterances[i].id for i in held]):
    first.extend(held[members[:len(members) // 2]])
  first = np.asarray(first, np.int64)
  return [('half1', np.sort(first)), ('half2', np.setdiff1d(held, first))]


def _require_all(utterances: Sequence[Utterance], field: str, what: str) -> None:
  """Raises unless every utterance has `field`, naming a few that lack it."""
  missing = [u.id for u in utterances if getattr(u, field) is None]
  if missing:
    raise ConfigError(f'{what} needs every utterance\'s {field}; {len(missing)} '
                      f'have none: {", ".join(missing[:5])}'
                      f'{" ..." if len(missing) > 5 else ""}')


def _sessions(utterances: Sequence[Utterance]) -> list:
  """The sorted sessions; raises unless every utterance has one and there are 2+."""
  _require_all(utterances, 'session', 'leave-one-session-out')
  sessions = sorted({u.session for u in utterances}, key=str)
  if len(sessions) < 2:
    raise ConfigError(f'leave-one-session-out needs at least 2 sessions, '
                      f'got {len(sessions)}: {sessions}')
  return sessions


def leave_one_session_out(utterances: Sequence[Utterance], labels=None, *,
                          orders: str = 'both') -> list[Split]:
  """Leave one session out: the other sessions train, the held-out one tests.

  The held-out session is split by speaker (`_session_parts`), as in the
  authors' code: one speaker is dev, the other test. `orders='both'` (the
  authors' runs): one fold per speaker, that speaker tested and the others
  dev; on IEMOCAP 10 folds, every utterance tested exactly once. Within a
  session the second part is tested first, then each later one, then the
  first, so with two speakers the first fold is the 'one' order's.
  `orders='one'`: one fold per session, dev the speaker whose id sorts first
  (IEMOCAP's 'Ses01F', the female actor), test the other(s): half the
  corpus tested. No seed is needed.

  Args:
    utterances: the corpus, `n` records, each with a session.
    labels: `[n]` class indices, or None; used only for single-speaker
      sessions.
    orders: 'both' or 'one'.

  Returns:
    The folds, named `<session>_test_<part>` ('Ses01_test_Ses01M') with both
    orders, by the session alone with one.

  Raises:
    ConfigError: an utterance has no session, there are fewer than two, or
      `orders` is neither 'both' nor 'one'.
  """
  if orders not in LOSO_ORDERS:
    raise ConfigError(f'config field loso_orders must be one of '
                      f'{", ".join(LOSO_ORDERS)}; got {orders!r}')
  sessions = _sessions(utterances)
  labels = (np.zeros(len(utterances), np.int64) if labels is None
            else _labels(utterances, labels))
  session_of = np.array([str(u.session) for u in utterances])
  splits = []
  for session in sessions:
    held = np.flatnonzero(session_of == str(session))
    parts = _session_parts(utterances, labels, held)
    if orders == 'one':
      splits.append(_split(str(session), len(utterances), parts[0][1],
                           np.setdiff1d(held, parts[0][1])))
      continue
    for tested in [*range(1, len(parts)), 0]:
      name, test = parts[tested]
      splits.append(_split(f'{session}_test_{name}', len(utterances),
                           np.setdiff1d(held, test), test))
  return splits


def random_split(utterances: Sequence[Utterance], labels, *, seed: int,
                 fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> list[Split]:
  """One random train/dev/test split, stratified by class.

  Each class's utterances (sorted by id, then permuted by the seeded
  generator) are cut at the rounded cumulative fractions, so every part
  holds each class in proportion to within one utterance.

  Args:
    utterances: the corpus, `n` records.
    labels: `[n]` class indices.
    seed: the generator seed.
    fractions: (train, dev, test), non-negative, summing to 1.

  Returns:
    A list with one split, named 'random'.

  Raises:
    ConfigError: bad fractions.
  """
  fractions = np.asarray(fractions, np.float64)
  if (fractions.shape != (3,) or np.any(fractions < 0)
      or abs(fractions.sum() - 1) > 1e-6):
    raise ConfigError(f'random split fractions must be 3 non-negative numbers '
                      f'(train, dev, test) summing to 1, got {fractions.tolist()}')
  labels = _labels(utterances, labels)
  rng = _rng(seed)
  dev, test = [], []
  for members in _groups([(int(y),) for y in labels], [u.id for u in utterances]):
    order = members[rng.permutation(len(members))]
    end_train, end_dev = np.round(np.cumsum(fractions)[:2] * len(order)).astype(int)
    dev.extend(order[end_train:end_dev])
    test.extend(order[end_dev:])
  return [_split('random', len(utterances), dev, test)]


def given_split(utterances: Sequence[Utterance]) -> list[Split]:
  """The corpus' own split: each utterance's `split` ('train', 'dev', 'test').

  Returns:
    A list with one split, named 'given'.

  Raises:
    ConfigError: an utterance has no split (naming a few).
  """
  _require_all(utterances, 'split', "protocol given (a manifest's split column)")
  part = np.array([u.split for u in utterances])
  return [_split('given', len(utterances), np.flatnonzero(part == 'dev'),
                 np.flatnonzero(part == 'test'))]


def make_folds(protocol: str, utterances: Sequence[Utterance], labels, *,
               seed: int, **options) -> list[Split]:
  """The folds of a protocol by name, each checked.

  Args:
    protocol: one of `PROTOCOLS`: 'paper', 'loso', 'random' or 'given'.
    utterances: the corpus, `n` records.
    labels: `[n]` class indices.
    seed: the seed ('loso' draws nothing and ignores it).
    **options: that protocol's own keywords (`num_subsets`, `num_folds` for
      'paper'; `orders` for 'loso'; `fractions` for 'random').

  Returns:
    The folds, every one with non-empty train, dev and test parts.

  Raises:
    ConfigError: an unknown protocol, bad options, or a fold with an empty
      part (a corpus too small for the protocol).
  """
  if protocol == 'paper':
    splits = paper_folds(utterances, labels, seed=seed, **options)
  elif protocol == 'loso':
    splits = leave_one_session_out(utterances, labels, **options)
  elif protocol == 'random':
    splits = random_split(utterances, labels, seed=seed, **options)
  elif protocol == 'given':
    splits = given_split(utterances, **options)
  else:
    raise ConfigError(f'config field protocol must be one of '
                      f'{", ".join(PROTOCOLS)}; got {protocol!r}')
  for split in splits:
    check_split(split, len(utterances))
    empty = [part for part in PARTS if not len(getattr(split, part))]
    if empty:
      raise ConfigError(
          f'protocol {protocol}, fold {split.name}: no utterances in '
          f'{" and ".join(empty)} ({len(utterances)} utterances in all; too '
          f'few for this protocol)')
  return splits


def check_split(split: Split, num: int) -> None:
  """Raises unless each part is sorted, unique, in range and disjoint.

  Args:
    split: the fold to check.
    num: the number of utterances the indices point into.

  Raises:
    ValueError: naming the fold, the part and the fault.
  """
  seen = np.zeros(num, np.int64)
  for part in PARTS:
    indices = np.asarray(getattr(split, part))
    where = f'split {split.name}, {part}'
    if indices.ndim != 1 or (len(indices) and
                             not np.issubdtype(indices.dtype, np.integer)):
      raise ValueError(f'{where}: expected a 1-D int array, got '
                       f'{indices.dtype} of shape {indices.shape}')
    if len(indices) and (indices.min() < 0 or indices.max() >= num):
      raise ValueError(f'{where}: indices outside [0, {num})')
    if np.any(np.diff(indices) <= 0):
      raise ValueError(f'{where}: indices not sorted and unique')
    seen[indices] += 1
  if np.any(seen > 1):
    twice = np.flatnonzero(seen > 1)
    raise ValueError(f'split {split.name}: {len(twice)} indices in two parts, '
                     f'first {twice[:5].tolist()}')

