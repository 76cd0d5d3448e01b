"""Corpora on disk, read into one record type and checked at load time.

`load_corpus(name, root)` is the single entry point. Each corpus has its own
module (its layout and its one label table); they all return `Utterance`
records with canonical labels. This module then applies the label map and
checks every kept entry before anything is trained on it:

- faults, skipped (and fatal with `strict=True`): missing files, unreadable
  or corrupt audio, WAV files cut short (the header declares more samples
  than the file holds), empty audio, non-finite samples, duplicate ids,
  unknown labels, file names or manifest rows that do not follow the layout;
- labels outside the label map: skipped and counted (IEMOCAP's frustrated
  and xxx, for instance, are not among the paper's classes);
- notes, kept: other sample rates (resampled on loading), more than one
  channel (mixed down), utterances shorter than the model minimum (padded by
  the model).

The summary of all this (counts by class, speaker, session and gender; every
skipped file and why) is logged and returned; nothing is dropped silently.
Audio is checked from its header (`soundfile.info`), plus a full read of
floating-point files, the only ones that can hold NaN or Inf; what the
feature cache finds later, when it reads every byte and every sample
(decoding errors, the same audio under two ids, features that overflow), is
reported the same way (`jaxser.data.cache`).

Example:

  utterances, summary = load_corpus('iemocap', '/data/IEMOCAP_full_release')
  targets = summary.label_map.indices(utterances)  # [n] int32
"""

import os

from absl import logging
import numpy as np
import soundfile as sf

from jaxser import audio
from jaxser.data import crema_d
from jaxser.data import demo
from jaxser.data import emodb
from jaxser.data import iemocap
from jaxser.data import manifest
from jaxser.data import ravdess
from jaxser.data import records
from jaxser.data import tess
from jaxser.data.records import CorpusSummary
from jaxser.data.records import Issue
from jaxser.data.records import LabelMap
from jaxser.data.records import PAPER_4CLASS
from jaxser.data.records import Utterance
from jaxser.data.records import get_label_map
from jaxser.errors import ConfigError
from jaxser.errors import CorpusError

__all__ = [
    'CorpusSummary', 'Issue', 'LabelMap', 'PAPER_4CLASS', 'READERS',
    'Utterance', 'check_audio', 'get_label_map', 'load_corpus',
]

READERS = {reader.NAME: reader.read for reader in (
    iemocap, crema_d, ravdess, emodb, tess, manifest, demo)}

_FLOAT_SUBTYPES = ('FLOAT', 'DOUBLE')


def load_corpus(name: str, root=None, *, label_map=None, strict: bool = False,
                min_frames: int | None = None, **options
                ) -> tuple[list[Utterance], CorpusSummary]:
  """Reads a corpus, keeps the valid utterances in the label map, reports.

  Args:
    name: one of `READERS`: 'iemocap', 'crema_d', 'ravdess', 'emodb', 'tess',
      'manifest' (root = the CSV) or 'demo' (root = its cache folder,
      `demo.default_dir()` when None; built there on first use).
    root: where the corpus is.
    label_map: the training classes: a `LabelMap`, 'paper4', a sequence or
      comma list of class names; None is the paper's 4 classes.
    strict: raise instead of skipping broken entries.
    min_frames: the model's shortest input, for the 'shorter than model
      minimum' note; None is the paper model's (`jaxser.models.min_frames`).
    **options: passed to the reader (the demo's `num_utterances`, `seed`).

  Returns:
    The kept utterances, in the reader's order, and the summary (also logged).

  Raises:
    ConfigError: unknown corpus name, or no root for a corpus that needs one.
    CorpusError: `root` does not hold the corpus; no utterance is usable; or
      `strict` and some entry is broken (the message lists every such file).
  """
  if name not in READERS:
    raise ConfigError(f'unknown corpus {name!r}; known: {", ".join(READERS)}')
  if root is None:
    if name != demo.NAME:
      raise ConfigError(f'corpus {name!r} needs a root folder (or CSV for manifest)')
    root = demo.default_dir()
  elif name != demo.NAME and not os.path.exists(root):
    raise CorpusError(f'{root}: does not exist (corpus {name!r})')
  label_map = get_label_map(label_map)
  found, issues = READERS[name](root, **options)
  kept, more_issues = _screen(found, label_map, min_frames=min_frames)
  summary = CorpusSummary.of(name, root, label_map, kept, issues + more_issues)
  _log_summary(summary)
  if strict and summary.faults:
    raise CorpusError(
        f'{root}: {len(summary.faults)} broken entries in corpus {name!r} '
        '(strict mode):\n' + records.format_issues(summary.faults))
  if not kept:
    raise CorpusError(f'{root}: no usable utterance in corpus {name!r}\n'
                      + summary.format())
  return kept, summary


def _screen(utterances, label_map: LabelMap, *, min_frames: int | None = None
            ) -> tuple[list[Utterance], list[Issue]]:
  """Keeps the utterances with a unique id, a label in the map and sound audio.

  A repeated id keeps its first occurrence. Audio is only checked for the
  utterances the label map keeps.

  Args:
    utterances: what a reader returned.
    label_map: the training classes.
    min_frames: the model's shortest input in frames (as `check_audio`).

  Returns:
    The kept utterances and the issues (skipped ones and notes).
  """
  kept, issues, first_path = [], [], {}
  for utt in utterances:
    if utt.id in first_path:
      issues.append(Issue('duplicate id', utt.path,
                          f'id {utt.id!r} is already used by {first_path[utt.id]}'))
      continue
    first_path[utt.id] = utt.path
    if label_map.class_of(utt.label) is None:
      issues.append(Issue('outside label map', utt.path,
                          f'label {utt.label!r} is not among {", ".join(label_map.classes)}'))
      continue
    found = check_audio(utt.path, min_frames=min_frames)
    issues.extend(found)
    if not any(issue.kind in records.FAULTS for issue in found):
      kept.append(utt)
  return kept, issues


def check_audio(path: str, *, min_frames: int | None = None) -> list[Issue]:
  """What is wrong with, or to be noted about, one audio file.

  Reads the header only (and compares a WAV header's data size with the
  file's), except for floating-point files, which are read in full for NaN
  and Inf (integer PCM cannot hold them).

  Args:
    path: the file.
    min_frames: the model's shortest input in frames (at 16 kHz); None is
      the paper model's (`jaxser.models.min_frames`).

  Returns:
    Issues: one fault (the file is unusable), or zero or more notes.
  """
  if not os.path.isfile(path):
    return [Issue('missing file', path, 'a folder, not an audio file'
                  if os.path.isdir(path) else 'no such file')]
  try:
    info = sf.info(path)
  except Exception as e:  # libsndfile's errors vary by format; keep its words.
    return [Issue('unreadable audio', path, f'not readable as audio ({e})')]
  cut = audio.wav_truncation(path)
  if cut:
    return [Issue('truncated audio', path, audio.describe_truncation(*cut))]
  if info.frames <= 0:
    return [Issue('empty audio', path, '0 samples')]
  if info.samplerate < audio.MIN_SAMPLE_RATE:
    return [Issue('unreadable audio', path,
                  audio.describe_low_rate(info.samplerate))]
  if info.subtype in _FLOAT_SUBTYPES:
    fault = _non_finite(path)
    if fault:
      return [fault]
  notes = []
  if info.samplerate != audio.SAMPLE_RATE:
    notes.append(Issue('resampled', path, f'{info.samplerate} Hz, resampled to '
                       f'{audio.SAMPLE_RATE} Hz'))
  if info.channels > 1:
    notes.append(Issue('mixed down', path, f'{info.channels} channels, mixed down to mono'))
  # Imported here so the demo's synthesis processes, which import this
  # package, do not load JAX.
  from jaxser import features  # pylint: disable=g-import-not-at-top
  from jaxser import models  # pylint: disable=g-import-not-at-top
  if min_frames is None:
    min_frames = models.min_frames(models.PAPER_CONVS)
  frames = int(features.num_frames(info.frames * audio.SAMPLE_RATE // info.samplerate,
                                   features.FeatureParams().hop_length))
  if frames < min_frames:
    notes.append(Issue('shorter than model minimum', path,
                       f'{frames} frames ({info.duration:.3f} s) < {min_frames}: '
                       'padded by the model'))
  return notes


def _non_finite(path: str) -> Issue | None:
  try:
    data, _ = sf.read(path, dtype='float32', always_2d=True)
  except Exception as e:  # a header that reads but a body that does not.
    return Issue('unreadable audio', path, f'samples not readable ({e})')
  bad = int(np.sum(~np.isfinite(data)))
  if bad:
    return Issue('non-finite samples', path, f'{bad} NaN or Inf samples')
  return None


def _log_summary(summary: CorpusSummary) -> None:
  """Logs the summary: INFO when clean, WARNING when anything was skipped."""
  if summary.faults:
    logging.warning('%s', summary.format())
  else:
    logging.info('%s', summary.format())

