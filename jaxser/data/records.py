"""The one utterance record, the label maps and the load-time report types.

Every corpus reader turns its layout into `Utterance` records whose `label` is
a canonical emotion name (`CANONICAL_LABELS`); each reader owns the one table
from its own codes to those names. A `LabelMap` then turns canonical names into
the training class indices; `PAPER_4CLASS`, the default, is the paper's
IEMOCAP set with excited merged into happy.

What a load skipped or noted is an `Issue` (a kind from `FAULTS`, `EXCLUDED`
or `NOTES`, the file and a detail), gathered in a `CorpusSummary`. The file
ends with the helpers the corpus readers share (listing a layout's files,
sorting what a parser returned into records and issues).
"""

import collections
import dataclasses
import pathlib
from typing import Iterable, Mapping, Sequence

import numpy as np

from jaxser.errors import ConfigError

__all__ = [
    'CANONICAL_LABELS', 'EXCLUDED', 'FAULTS', 'LABEL_ALIASES', 'NOTES',
    'PAPER_4CLASS', 'CorpusSummary', 'Issue', 'LabelMap', 'Utterance',
    'canonical_label', 'format_issues', 'get_label_map', 'list_files',
    'parse_gender', 'utterances_and_issues',
]

# The paper's four classes, in class-index order (docs/method.md, Protocols).
_PAPER_CLASSES = ('neutral', 'angry', 'happy', 'sad')

# Emotion names every reader maps its codes to.
CANONICAL_LABELS = _PAPER_CLASSES + (
    'calm', 'fearful', 'disgust', 'surprised', 'boredom', 'frustrated',
    'excited', 'contempt', 'other',
    'no_agreement',  # IEMOCAP 'xxx': the annotators had no majority
)

# Other spellings a CSV manifest may use for the canonical names.
LABEL_ALIASES = {
    'neu': 'neutral', 'anger': 'angry', 'ang': 'angry', 'happiness': 'happy',
    'hap': 'happy', 'joy': 'happy', 'sadness': 'sad', 'fear': 'fearful',
    'fea': 'fearful', 'afraid': 'fearful', 'disgusted': 'disgust',
    'dis': 'disgust', 'surprise': 'surprised', 'sur': 'surprised',
    'bored': 'boredom', 'frustration': 'frustrated', 'fru': 'frustrated',
    'excitement': 'excited', 'exc': 'excited', 'oth': 'other',
    'xxx': 'no_agreement',
}

_GENDERS = ('M', 'F')

# Issue kinds. Faults are broken entries: skipped, and fatal with strict=True.
FAULTS = ('missing file', 'unreadable audio', 'truncated audio', 'empty audio',
          'non-finite samples', 'duplicate id', 'unknown label',
          'unrecognised name', 'bad manifest row',
          # Found by the feature cache (`jaxser.data.cache`), which reads
          # every file's bytes and computes every feature:
          'duplicate audio', 'duplicate audio with conflicting labels',
          'non-finite features')
# Deliberately left out (a label the training classes do not use): skipped.
EXCLUDED = ('outside label map',)
# Kept, with something done to them later.
NOTES = ('resampled', 'mixed down', 'shorter than model minimum')


@dataclasses.dataclass(frozen=True)
class Utterance:
  """One labelled recording, whatever corpus it comes from.

  Attributes:
    id: unique within the corpus (the file stem for most corpora).
    path: the audio file, absolute.
    label: a canonical emotion name (`CANONICAL_LABELS`).
    speaker: the speaker's id within the corpus, or None if unknown.
    gender: 'M', 'F' or None.
    session: the recording session, or the corpus' natural speaker group
      (the speaker where a corpus has no sessions); None if unknown.
    improvised: True (improvised), False (scripted) or None (unknown).
    corpus: the corpus name ('iemocap', 'crema_d', ..., 'manifest', 'demo').
    split: 'train', 'dev' or 'test' where the corpus gives a split (a
      manifest's `split` column: a published split for the 'given'
      protocol), else None.
  """
  id: str
  path: str
  label: str
  speaker: str | None
  gender: str | None
  session: str | None
  improvised: bool | None
  corpus: str
  split: str | None = None

  def __post_init__(self):
    if self.gender not in (None,) + _GENDERS:
      raise ValueError(f'{self.id}: gender must be M, F or None, got {self.gender!r}')


def canonical_label(text: str) -> str | None:
  """A canonical name for `text` (a canonical name or an alias), else None."""
  key = text.strip().lower().replace(' ', '_')
  if key in CANONICAL_LABELS:
    return key
  return LABEL_ALIASES.get(key)


def parse_gender(text: str | None) -> str | None:
  """'M' / 'F' from M, F, male, female (any case); None for anything else."""
  key = (text or '').strip().lower()
  return {'m': 'M', 'male': 'M', 'f': 'F', 'female': 'F'}.get(key)


@dataclasses.dataclass(frozen=True)
class LabelMap:
  """Canonical labels to training class indices.

  Attributes:
    classes: the class names in index order.
    merges: `(label, class)` pairs: utterances labelled `label` train as
      `class` (the paper merges IEMOCAP's excited into happy).
  """
  classes: tuple[str, ...]
  merges: tuple[tuple[str, str], ...] = ()

  def __post_init__(self):
    if not self.classes or len(set(self.classes)) != len(self.classes):
      raise ConfigError(f'label map classes must be distinct and non-empty: {self.classes}')
    for label, target in self.merges:
      if target not in self.classes:
        raise ConfigError(f'label map merges {label!r} into {target!r}, not a class')
      if label in self.classes:
        raise ConfigError(f'label map merges {label!r}, which is itself a class')

  @property
  def num_classes(self) -> int:
    return len(self.classes)

  def class_of(self, label: str) -> str | None:
    """The class name `label` trains as, or None if the map leaves it out."""
    if label in self.classes:
      return label
    return dict(self.merges).get(label)

  def index(self, label: str) -> int | None:
    """The class index of `label`, or None if the map leaves it out."""
    name = self.class_of(label)
    return None if name is None else self.classes.index(name)

  def indices(self, utterances: Iterable[Utterance]) -> np.ndarray:
    """`[n]` int32 class indices; every label must be in the map."""
    out = []
    for utt in utterances:
      index = self.index(utt.label)
      if index is None:
        raise ConfigError(f'{utt.id}: label {utt.label!r} is outside the label map {self.classes}')
      out.append(index)
    return np.asarray(out, np.int32)

  def to_dict(self) -> dict:
    return {'classes': list(self.classes), 'merges': [list(m) for m in self.merges]}


PAPER_4CLASS = LabelMap(classes=_PAPER_CLASSES, merges=(('excited', 'happy'),))

_NAMED_LABEL_MAPS = {'paper4': PAPER_4CLASS}


def get_label_map(spec: 'LabelMap | str | Sequence[str] | None' = None) -> LabelMap:
  """A `LabelMap` from a map, a name, a comma list or a sequence of classes.

  Args:
    spec: None (the paper's 4 classes), a `LabelMap`, a name in
      `_NAMED_LABEL_MAPS` ('paper4'), or class names as a sequence or as one
      comma-separated string (e.g. from a flag: 'neutral,angry,happy,sad').
      Names may be aliases ('anger', 'fear').

  Returns:
    The LabelMap.

  Raises:
    ConfigError: a name that is neither a known map nor a label.
  """
  if spec is None:
    return PAPER_4CLASS
  if isinstance(spec, LabelMap):
    return spec
  if isinstance(spec, str):
    if spec in _NAMED_LABEL_MAPS:
      return _NAMED_LABEL_MAPS[spec]
    spec = [name for name in spec.split(',') if name.strip()]
  classes = []
  for name in spec:
    label = canonical_label(name)
    if label is None:
      raise ConfigError(f'label map: {name!r} is not an emotion label '
                        f'(known: {", ".join(CANONICAL_LABELS)})')
    classes.append(label)
  return LabelMap(tuple(classes))


@dataclasses.dataclass(frozen=True)
class Issue:
  """Something a load skipped or noted about one file.

  Attributes:
    kind: one of `FAULTS`, `EXCLUDED` or `NOTES`.
    path: the file concerned (audio, label file or manifest).
    detail: what exactly, in words.
  """
  kind: str
  path: str
  detail: str = ''

  def __post_init__(self):
    if self.kind not in FAULTS + EXCLUDED + NOTES:
      raise ValueError(f'unknown issue kind {self.kind!r}')

  def __str__(self):
    return f'{self.path}: {self.detail}' if self.detail else self.path


def _count(values: Iterable) -> dict:
  counts = collections.Counter('?' if v is None else str(v) for v in values)
  return dict(sorted(counts.items()))


@dataclasses.dataclass(frozen=True)
class CorpusSummary:
  """What a load kept, skipped and noted.

  Attributes:
    corpus: the corpus name.
    root: where it was read from.
    label_map: the map applied.
    by_class: kept utterances per class, in class order.
    by_label: kept utterances per canonical label (before merges).
    by_speaker, by_session, by_gender: kept utterances per value ('?' = None).
    skipped: the `FAULTS` and `EXCLUDED` issues: files not kept.
    notes: the `NOTES` issues: files kept with a remark.
  """
  corpus: str
  root: str
  label_map: LabelMap
  by_class: Mapping[str, int]
  by_label: Mapping[str, int]
  by_speaker: Mapping[str, int]
  by_session: Mapping[str, int]
  by_gender: Mapping[str, int]
  skipped: tuple[Issue, ...]
  notes: tuple[Issue, ...]

  @classmethod
  def of(cls, corpus: str, root: str, label_map: LabelMap,
         kept: Sequence[Utterance], issues: Iterable[Issue]) -> 'CorpusSummary':
    """Counts the kept utterances and sorts the issues into skipped and notes."""
    issues = list(issues)
    by_class = collections.Counter(label_map.class_of(u.label) for u in kept)
    return cls(
        corpus=corpus, root=str(root), label_map=label_map,
        by_class={name: by_class.get(name, 0) for name in label_map.classes},
        by_label=_count(u.label for u in kept),
        by_speaker=_count(u.speaker for u in kept),
        by_session=_count(u.session for u in kept),
        by_gender=_count(u.gender for u in kept),
        skipped=tuple(i for i in issues if i.kind not in NOTES),
        notes=tuple(i for i in issues if i.kind in NOTES))

  @property
  def num_utterances(self) -> int:
    return sum(self.by_class.values())

  @property
  def faults(self) -> tuple[Issue, ...]:
    """The skipped entries that are broken (what strict mode refuses)."""
    return tuple(i for i in self.skipped if i.kind in FAULTS)

  def count(self, kind: str) -> int:
    """How many issues of `kind` (skipped or noted)."""
    return sum(i.kind == kind for i in self.skipped + self.notes)

  def format(self, max_files: int | None = 20) -> str:
    """The summary as text; at most `max_files` names per issue kind (None: all)."""
    lines = [
        f'corpus {self.corpus} at {self.root}: {self.num_utterances} utterances, '
        f'{len(self.by_speaker)} speakers, {len(self.by_session)} sessions',
        '  classes: ' + _join(self.by_class),
        '  labels: ' + _join(self.by_label),
        '  speakers: ' + _join(self.by_speaker),
        '  sessions: ' + _join(self.by_session),
        '  genders: ' + _join(self.by_gender),
    ]
    for title, issues in (('skipped', self.skipped), ('noted', self.notes)):
      for kind in FAULTS + EXCLUDED + NOTES:
        of_kind = [i for i in issues if i.kind == kind]
        if of_kind:
          lines.append(f'  {title}, {kind}: {len(of_kind)}')
          lines.extend(_issue_lines(of_kind, max_files))
    if not self.skipped and not self.notes:
      lines.append('  nothing skipped, nothing noted')
    return '\n'.join(lines)


def format_issues(issues: Sequence[Issue], max_files: int | None = None) -> str:
  """Issues grouped by kind, one file a line (at most `max_files` a kind)."""
  lines = []
  for kind in FAULTS + EXCLUDED + NOTES:
    of_kind = [i for i in issues if i.kind == kind]
    if of_kind:
      lines.append(f'{kind} ({len(of_kind)}):')
      lines.extend(_issue_lines(of_kind, max_files))
  return '\n'.join(lines)


def _issue_lines(issues: Sequence[Issue], max_files: int | None) -> list[str]:
  shown = issues if max_files is None else issues[:max_files]
  lines = [f'    {issue}' for issue in shown]
  if len(shown) < len(issues):
    lines.append(f'    ... and {len(issues) - len(shown)} more')
  return lines


def _join(counts: Mapping[str, int]) -> str:
  return ', '.join(f'{key} {value}' for key, value in counts.items()) or '-'


# --------------------------------------------------------------------------
# Helpers shared by the corpus readers.


def list_files(folder, suffix: str = '.wav', *, recursive: bool = False) -> list:
  """The `suffix` files in `folder` (sorted), ignoring dot-files and dot-folders.

  Dot-files are editor and macOS leftovers (`._x.wav` resource forks), never
  recordings, so they are left out without a remark.
  """
  folder = pathlib.Path(folder)
  found = folder.rglob('*') if recursive else folder.iterdir()
  return sorted(
      p for p in found
      if p.suffix.lower() == suffix and p.is_file()
      and not any(part.startswith('.') for part in p.relative_to(folder).parts))


def utterances_and_issues(items: Iterable['Utterance | Issue']
                          ) -> tuple[list[Utterance], list[Issue]]:
  """Splits what a reader's per-file parser returned into records and issues."""
  utterances, issues = [], []
  for item in items:
    (utterances if isinstance(item, Utterance) else issues).append(item)
  return utterances, issues
