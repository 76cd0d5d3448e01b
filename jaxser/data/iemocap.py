"""IEMOCAP, read from its release layout (docs/corpora.md, Reading a corpus).

    <root>/Session{1..5}/dialog/EmoEvaluation/<dialog>.txt
    <root>/Session{1..5}/sentences/wav/<dialog>/<utterance>.wav

Each EmoEvaluation file holds one summary line per utterance,

    [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]

(start and end in seconds, utterance id, majority label, valence, activation,
dominance), followed by the individual annotations, which are ignored, as are
the folder's subfolders (Attribute/, Categorical/, Self-evaluation/) and its
dot-files. The dialog is the utterance id without its last `_XNNN` part; X is
the gender of the speaking actor, and the session's two actors are told apart
by it (speaker `Ses01F` is the female actor of session 1). A dialog is
improvised when its name contains 'impro', scripted otherwise.
"""

import pathlib
import re

from jaxser.data import records
from jaxser.errors import CorpusError

__all__ = ['LABELS', 'NAME', 'read']

NAME = 'iemocap'

# The one IEMOCAP label table: EmoEvaluation codes to canonical names.
LABELS = {
    'neu': 'neutral', 'ang': 'angry', 'hap': 'happy', 'exc': 'excited',
    'sad': 'sad', 'fru': 'frustrated', 'sur': 'surprised', 'fea': 'fearful',
    'dis': 'disgust', 'oth': 'other', 'xxx': 'no_agreement',
}

_SUMMARY_LINE = re.compile(
    r'^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\t(?P<id>\S+)\t(?P<code>\S+)\t\[')
_UTTERANCE_ID = re.compile(
    r'^(?P<dialog>(?P<session>Ses\d\d)[FM]_\S+)_(?P<gender>[FM])\d+$')


def read(root) -> tuple[list[records.Utterance], list[records.Issue]]:
  """Every utterance of every EmoEvaluation summary line under `root`.

  Args:
    root: the folder holding Session1 ... Session5.

  Returns:
    The utterances (audio not yet checked) and the lines that could not be
    used (unrecognised ids, unknown labels).

  Raises:
    CorpusError: `root` holds no SessionN/dialog/EmoEvaluation folder.
  """
  root = pathlib.Path(root)
  sessions = sorted(p for p in root.glob('Session*')
                    if re.fullmatch(r'Session\d+', p.name) and p.is_dir())
  folders = [s / 'dialog' / 'EmoEvaluation' for s in sessions]
  label_files = [f for folder in folders if folder.is_dir()
                 for f in records.list_files(folder, '.txt')]
  if not label_files:
    raise CorpusError(
        f'{root}: no Session<N>/dialog/EmoEvaluation/*.txt found; point the '
        'IEMOCAP reader at the folder that holds Session1 ... Session5')
  items = []
  for label_file in label_files:
    session_dir = label_file.parents[2]
    items.extend(_read_label_file(label_file, session_dir))
  return records.utterances_and_issues(items)


def _read_label_file(label_file: pathlib.Path, session_dir: pathlib.Path):
  """Yields an Utterance or an Issue for each summary line of one file."""
  with open(label_file, encoding='utf-8', errors='replace') as f:
    for line_number, line in enumerate(f, 1):
      match = _SUMMARY_LINE.match(line)
      if match:
        yield _parse(match['id'], match['code'], session_dir,
                     f'{label_file.name} line {line_number}')


def _parse(utterance_id: str, code: str, session_dir: pathlib.Path, where: str):
  parts = _UTTERANCE_ID.match(utterance_id)
  if parts is None:
    return records.Issue('unrecognised name', str(session_dir / utterance_id),
                         f'utterance id {utterance_id!r} ({where}) is not '
                         'Ses<NN><F|M>_<dialog>_<F|M><NNN>')
  path = session_dir / 'sentences' / 'wav' / parts['dialog'] / f'{utterance_id}.wav'
  label = LABELS.get(code)
  if label is None:
    return records.Issue('unknown label', str(path),
                         f'label {code!r} ({where}) is not one of {", ".join(LABELS)}')
  return records.Utterance(
      id=utterance_id, path=str(path.absolute()), label=label,
      speaker=parts['session'] + parts['gender'], gender=parts['gender'],
      session=parts['session'], improvised='impro' in parts['dialog'],
      corpus=NAME)
