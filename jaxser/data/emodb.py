"""EmoDB (Berlin Database of Emotional Speech), read from its release layout.

    <root>/wav/03a01Fa.wav   speaker (2 digits), text (3), emotion, version

Emotion letters are the German initials: W Wut (anger), L Langeweile
(boredom), E Ekel (disgust), A Angst (fear), F Freude (happiness),
T Trauer (sadness), N neutral. The speakers' genders are those the corpus
documentation lists. EmoDB has no sessions: each speaker is its own group.
All texts are scripted. `root` may also be the wav folder itself.
"""

import pathlib
import re

from jaxser.data import records
from jaxser.errors import CorpusError

__all__ = ['LABELS', 'NAME', 'read']

NAME = 'emodb'

# The one EmoDB label table: emotion letters to canonical names.
LABELS = {'W': 'angry', 'L': 'boredom', 'E': 'disgust', 'A': 'fearful',
          'F': 'happy', 'T': 'sad', 'N': 'neutral'}

# The ten speakers, from the corpus documentation (Burkhardt et al. 2005).
_GENDERS = {'03': 'M', '08': 'F', '09': 'F', '10': 'M', '11': 'M', '12': 'M',
           '13': 'F', '14': 'F', '15': 'M', '16': 'F'}

_FILE_NAME = re.compile(
    r'^(?P<speaker>\d\d)(?P<text>[a-z]\d\d)(?P<code>[A-Z])(?P<version>[a-z])$')


def read(root) -> tuple[list[records.Utterance], list[records.Issue]]:
  """Every `SStttEv.wav` in `root`/wav (or in `root` itself).

  Args:
    root: the EmoDB folder (holding wav/) or its wav folder.

  Returns:
    The utterances (audio not yet checked) and the files whose names do not
    follow the layout or carry an unknown emotion letter.

  Raises:
    CorpusError: no wav file found.
  """
  root = pathlib.Path(root)
  folder = root / 'wav' if (root / 'wav').is_dir() else root
  files = records.list_files(folder)
  if not files:
    raise CorpusError(f'{root}: no wav/*.wav (nor *.wav) found: not an EmoDB folder')
  return records.utterances_and_issues(_parse(path) for path in files)


def _parse(path: pathlib.Path):
  parts = _FILE_NAME.match(path.stem)
  if parts is None:
    return records.Issue('unrecognised name', str(path),
                         'not <speaker NN><text aNN><emotion letter><version>.wav')
  label = LABELS.get(parts['code'])
  if label is None:
    return records.Issue('unknown label', str(path),
                         f'emotion {parts["code"]!r} is not one of {", ".join(LABELS)}')
  speaker = parts['speaker']
  return records.Utterance(
      id=path.stem, path=str(path.absolute()), label=label, speaker=speaker,
      gender=_GENDERS.get(speaker), session=speaker, improvised=False,
      corpus=NAME)
