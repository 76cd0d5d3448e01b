"""RAVDESS, read from its release layout (docs/corpora.md, Reading a corpus).

    <root>/Actor_01/03-01-06-01-02-01-12.wav

The seven fields are modality (03 audio only), vocal channel (01 speech,
02 song), emotion, intensity (01 normal, 02 strong), statement, repetition
and actor (01-24; odd actors are male). Files are found at any depth below
`root`, so both the per-actor zip layout and the Kaggle copy work. RAVDESS
has no sessions: each actor is its own group. All statements are scripted.
"""

import pathlib
import re

from jaxser.data import records
from jaxser.errors import CorpusError

__all__ = ['LABELS', 'NAME', 'read']

NAME = 'ravdess'

# The one RAVDESS label table: emotion field to canonical names.
LABELS = {'01': 'neutral', '02': 'calm', '03': 'happy', '04': 'sad',
          '05': 'angry', '06': 'fearful', '07': 'disgust', '08': 'surprised'}

_FILE_NAME = re.compile(
    r'^(?P<modality>\d\d)-(?P<channel>\d\d)-(?P<code>\d\d)-(?P<intensity>\d\d)'
    r'-(?P<statement>\d\d)-(?P<repetition>\d\d)-(?P<actor>\d\d)$')


def read(root) -> tuple[list[records.Utterance], list[records.Issue]]:
  """Every `MM-VV-EE-II-SS-RR-AA.wav` at any depth below `root`.

  Args:
    root: the folder holding the Actor_NN folders.

  Returns:
    The utterances (audio not yet checked) and the files whose names do not
    follow the layout or carry an unknown emotion code.

  Raises:
    CorpusError: no wav file found.
  """
  root = pathlib.Path(root)
  files = records.list_files(root, recursive=True)
  if not files:
    raise CorpusError(f'{root}: no Actor_NN/*.wav found: not a RAVDESS folder')
  return records.utterances_and_issues(_parse(path) for path in files)


def _parse(path: pathlib.Path):
  parts = _FILE_NAME.match(path.stem)
  if parts is None:
    return records.Issue('unrecognised name', str(path),
                         'not MM-VV-EE-II-SS-RR-AA.wav (seven two-digit fields)')
  label = LABELS.get(parts['code'])
  if label is None:
    return records.Issue('unknown label', str(path),
                         f'emotion {parts["code"]!r} is not one of {", ".join(LABELS)}')
  actor = f'Actor_{parts["actor"]}'
  return records.Utterance(
      id=path.stem, path=str(path.absolute()), label=label, speaker=actor,
      gender='M' if int(parts['actor']) % 2 else 'F', session=actor,
      improvised=False, corpus=NAME)
