"""TESS (Toronto emotional speech set), read from its release layout.

    <root>/<any folders>/OAF_back_angry.wav   speaker, word, emotion

Speakers OAF (older adult female) and YAF (young adult female); emotions
angry, disgust, fear, happy, neutral, ps (pleasant surprise), sad. Folder
names and their casing vary between copies (OAF_Fear, YAF_pleasant_surprised,
...), so only the file name is read, case-insensitively, and files are found
at any depth below `root`. Each speaker is its own group; the carrier phrase
"Say the word ..." is scripted.
"""

import pathlib

from jaxser.data import records
from jaxser.errors import CorpusError

__all__ = ['LABELS', 'NAME', 'read']

NAME = 'tess'

# The one TESS label table: file-name emotions to canonical names.
LABELS = {'angry': 'angry', 'disgust': 'disgust', 'fear': 'fearful',
          'happy': 'happy', 'neutral': 'neutral', 'ps': 'surprised',
          'sad': 'sad'}
_SPEAKERS = ('OAF', 'YAF')  # both actresses are female


def read(root) -> tuple[list[records.Utterance], list[records.Issue]]:
  """Every `<OAF|YAF>_<word>_<emotion>.wav` at any depth below `root`.

  Args:
    root: the TESS folder.

  Returns:
    The utterances (audio not yet checked) and the files whose names do not
    follow the layout or carry an unknown emotion.

  Raises:
    CorpusError: no wav file found.
  """
  root = pathlib.Path(root)
  files = records.list_files(root, recursive=True)
  if not files:
    raise CorpusError(f'{root}: no <OAF|YAF>_<word>_<emotion>.wav found: not a TESS folder')
  return records.utterances_and_issues(_parse(path) for path in files)


def _parse(path: pathlib.Path):
  fields = path.stem.split('_')
  speaker = fields[0].upper()
  if len(fields) < 3 or speaker not in _SPEAKERS:
    return records.Issue('unrecognised name', str(path),
                         'not <OAF|YAF>_<word>_<emotion>.wav')
  code = fields[-1].lower()
  label = LABELS.get(code)
  if label is None:
    return records.Issue('unknown label', str(path),
                         f'emotion {code!r} is not one of {", ".join(LABELS)}')
  return records.Utterance(
      id=path.stem, path=str(path.absolute()), label=label, speaker=speaker,
      gender='F', session=speaker, improvised=False, corpus=NAME)
