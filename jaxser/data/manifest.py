"""A corpus described by a CSV manifest: any layout, one row per utterance.

    path,label,speaker,session,gender
    clips/a.wav,angry,spk1,s1,F
    /data/b.flac,neutral,spk2,s1,M

Required columns: `path` (relative paths resolve against the CSV's folder)
and `label` (a canonical name such as `neutral`, or an alias such as `anger`,
`fear`, `neu`: see `records.LABEL_ALIASES`). Optional columns: `id` (default:
the path relative to the CSV's folder, without its suffix unless files differ
only in their suffix, as `x.flac` and `x.ogg`), `speaker`,
`session`, `gender` (M/F/male/female; anything else is unknown),
`improvised` (true/false, yes/no, 1/0, improvised/scripted) and `split`
(train, dev or test; valid, validation and val mean dev): a published split,
which `config.protocol='given'` uses as it is. Other columns are ignored.
Audio may be any format libsndfile reads, at any rate.
"""

import collections
import csv
import dataclasses
import os
import pathlib

from jaxser.data import records
from jaxser.errors import CorpusError

__all__ = ['FILE_NAME', 'NAME', 'read']

NAME = 'manifest'
FILE_NAME = 'manifest.csv'  # looked for when `root` is a folder
_REQUIRED = ('path', 'label')

_SPLITS = {'train': 'train', 'dev': 'dev', 'valid': 'dev', 'validation': 'dev',
           'val': 'dev', 'test': 'test'}
_BOOLEANS = {'true': True, 'yes': True, '1': True, 'improvised': True,
             'false': False, 'no': False, '0': False, 'scripted': False}


def read(root, *, corpus: str = NAME) -> tuple[list[records.Utterance], list[records.Issue]]:
  """Every row of a manifest CSV.

  Args:
    root: the CSV file, or a folder holding `manifest.csv`.
    corpus: the name the records carry (the demo corpus passes 'demo').

  Returns:
    The utterances (audio not yet checked) and the rows that could not be
    used (missing fields, unknown labels).

  Raises:
    CorpusError: no such CSV, or it lacks a `path` or `label` column.
  """
  csv_path = pathlib.Path(root)
  if csv_path.is_dir():
    csv_path = csv_path / FILE_NAME
  if not csv_path.is_file():
    raise CorpusError(f'{csv_path}: no manifest CSV there')
  try:
    columns, rows = _read_rows(csv_path)
  except UnicodeDecodeError as e:
    raise CorpusError(f'{csv_path}: not UTF-8 text (byte {e.start}: {e.reason}); '
                      'save the manifest as UTF-8') from e
  except csv.Error as e:
    raise CorpusError(f'{csv_path}: not a readable CSV ({e})') from e
  missing = [c for c in _REQUIRED if c not in columns]
  if missing:
    raise CorpusError(f'{csv_path}: the manifest has no {" or ".join(missing)} '
                      f'column (columns: {", ".join(columns) or "none"})')
  # Row 1 is the header, so data rows start at 2 (as a spreadsheet shows them).
  utterances, issues = records.utterances_and_issues(
      _parse(row, csv_path, number, corpus) for number, row in enumerate(rows, 2)
      if any(row.values()))
  return _keep_suffixes_that_tell_apart(utterances, rows, csv_path), issues


def _keep_suffixes_that_tell_apart(utterances, rows, csv_path: pathlib.Path):
  """Default ids of files that differ only in suffix keep their suffix.

  `x.flac` and `x.ogg` would both default to `x`, and the second be dropped
  as a duplicate id; as `x.flac` and `x.ogg` both are kept (other default
  ids stay suffix-free, so existing ids do not change).
  """
  given = {os.path.abspath(csv_path.parent / r['path']) for r in rows
           if r.get('id') and r.get('path')}
  defaulted = [u for u in utterances if u.path not in given]
  stems = collections.Counter(u.id for u in defaulted)
  paths = collections.defaultdict(set)
  for u in defaulted:
    paths[u.id].add(u.path)
  clashing = {i for i, n in stems.items() if n > 1 and len(paths[i]) > 1}
  return [dataclasses.replace(u, id=pathlib.PurePath(
              os.path.relpath(u.path, csv_path.parent)).as_posix())
          if u.path not in given and u.id in clashing else u
          for u in utterances]


def _read_rows(csv_path: pathlib.Path) -> tuple[list[str], list[dict]]:
  """The lower-cased column names and the rows, values stripped."""
  with open(csv_path, newline='', encoding='utf-8-sig') as f:
    reader = csv.DictReader(f)
    columns = [c.strip().lower() for c in reader.fieldnames or ()]
    rows = [{k.strip().lower(): (v or '').strip() for k, v in row.items() if k}
            for row in reader]
  return columns, rows


def _parse(row: dict, csv_path: pathlib.Path, number: int, corpus: str):
  where = f'{csv_path.name} row {number}'
  if not row.get('path') or not row.get('label'):
    return records.Issue('bad manifest row', str(csv_path),
                         f'row {number}: empty path or label (path '
                         f'{row.get("path", "")!r}, label {row.get("label", "")!r})')
  path = pathlib.Path(os.path.abspath(csv_path.parent / row['path']))
  if path == csv_path.parent.absolute() or not path.name:
    return records.Issue('bad manifest row', str(csv_path),
                         f'row {number}: path {row["path"]!r} names a folder, '
                         'not an audio file')
  label = records.canonical_label(row['label'])
  if label is None:
    return records.Issue('unknown label', str(path),
                         f'label {row["label"]!r} ({where}) is not an emotion label')
  improvised = row.get('improvised', '').lower()
  if improvised and improvised not in _BOOLEANS:
    return records.Issue('bad manifest row', str(path),
                         f'improvised {row["improvised"]!r} ({where}) is not true/false')
  split = row.get('split', '').lower()
  if split and split not in _SPLITS:
    return records.Issue('bad manifest row', str(path),
                         f'split {row["split"]!r} ({where}) is not train, dev or test')
  default_id = pathlib.PurePath(os.path.relpath(path, csv_path.parent)).with_suffix('')
  return records.Utterance(
      id=row.get('id') or default_id.as_posix(), path=str(path), label=label,
      speaker=row.get('speaker') or None,
      gender=records.parse_gender(row.get('gender')),
      session=row.get('session') or None,
      improvised=_BOOLEANS.get(improvised), corpus=corpus,
      split=_SPLITS.get(split))
