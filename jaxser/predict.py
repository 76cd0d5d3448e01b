"""Predicts emotions of audio files with a trained workdir.

  python -m jaxser.predict --workdir=/tmp/ser a.wav more_audio/ [--embeddings z.npy]

Prints one JSON line per file, in the order given (folders expanded to their
audio files, sorted): the predicted emotion, the class probabilities and
`index`, the file's row in the --embeddings array; or, for a file that cannot
be predicted, `{"file": ..., "error": ...}` at its place (the others go on).
A file cannot be predicted when it cannot be read (missing, unreadable,
empty, non-finite samples), when its features are not finite (a finite
waveform whose power overflows float32) or when the model's outputs for it
are not finite. The output is strict JSON (never NaN). At the end, stderr
says how many files could not be predicted, and the exit status is 1 if any
could not (0 with --allow_failures, unless none could); a bad argument or
workdir ends in one line `jaxser: <message>` before any file is read.

The model is `jaxser.Classifier`'s: the best checkpoint (the latest if no
dev evaluation ran) with the features and standardisation saved in it.
Files are read and predicted a few batches at a time, each cut to the
samples its features read (`features.crop_waveform`), so memory does not
grow with the number or length of the files beyond reading one file.
"""

import io
import json
import os
import sys

from absl import flags
import jax
import numpy as np

from jaxser import audio
from jaxser import cli
from jaxser import features as features_lib
from jaxser import fileio
from jaxser import parallel
from jaxser.classifier import Classifier
from jaxser.classifier import check_batch_size
from jaxser.errors import ConfigError
from jaxser.errors import JaxserError

__all__ = ['define_flags', 'main']


def define_flags():
  """The command's flags (defined only when run as a program)."""
  flags.DEFINE_string('workdir', None, 'A trained workdir.')
  flags.DEFINE_string('embeddings', None,
                      'Save the embeddings z of the predicted files (row '
                      '`index` of each) to this .npy file.')
  flags.DEFINE_integer('batch_size', 32, 'Utterances per batch.')
  flags.DEFINE_bool('allow_failures', False, 'Exit 0 when some files could not '
                    'be predicted (their lines still say why); 1 only if none could.')

AUDIO_SUFFIXES = ('.wav', '.flac', '.ogg', '.aiff', '.aif')
GROUP_BATCHES = 4  # Files read at once, in batches: holds a few batches' audio.


def expand(paths) -> list[str]:
  """Files as given, and the audio files under each folder, sorted."""
  out = []
  for path in paths:
    if os.path.isdir(path):
      for folder, _, names in sorted(os.walk(path)):
        out += [os.path.join(folder, n) for n in sorted(names)
                if n.lower().endswith(AUDIO_SUFFIXES)]
    else:
      out.append(path)
  return out


def check_embeddings_path(path: str) -> None:
  """Refuses an --embeddings file that could not be written at the end.

  Raises:
    ConfigError: `path` is a folder, its folder does not exist, or either is
      not writable.
  """
  folder = os.path.dirname(os.path.abspath(path))
  if os.path.isdir(path):
    fault = 'is a folder; give a file name'
  elif os.path.exists(folder) and not os.path.isdir(folder):
    fault = f'{folder} is not a folder'
  elif not os.path.isdir(folder):
    fault = f'the folder {folder} does not exist'
  elif not os.access(folder, os.W_OK) or (
      os.path.exists(path) and not os.access(path, os.W_OK)):
    fault = 'not writable'
  else:
    return
  raise ConfigError(f'--embeddings={path}: {fault}')


def save_embeddings(path: str, z: np.ndarray) -> None:
  """Writes `z` to exactly `path` (np.save would add '.npy'), atomically.

  Raises:
    JaxserError: it could not be written; no partial file is left.
  """
  buffer = io.BytesIO()
  np.save(buffer, z)
  fileio.atomic_write(path, buffer.getvalue())


def read_group(paths: list[str], params):
  """Reads files, each cut to its features' samples.

  Returns:
    `(read, waves, errors)`: the paths read and their waveforms, and
    `(path, message)` for each file that could not be read.
  """
  read, waves, errors = [], [], []
  for path in paths:
    try:
      # Cut at once: one whole (resampled) file is held at a time.
      waves.append(features_lib.crop_waveform(audio.load(path), params))
      read.append(path)
    except JaxserError as e:
      errors.append((path, str(e)))
  return read, waves, errors


def predict_group(classifier: Classifier, paths: list[str], batch_size: int):
  """Yields `(path, (p, z))` or `(path, error message)` for each path, in order.

  Only finite features reach the model, and only finite outputs are returned.
  """
  read, waves, errors = read_group(paths, classifier.params)
  feats = classifier.features(waves)
  finite = [bool(np.all(np.isfinite(f))) for f in feats]
  probs, z = classifier.predict_features(
      [f for f, ok in zip(feats, finite) if ok], batch_size)
  outputs = iter(zip(probs, z))
  results = dict(errors)
  for path, wave, ok in zip(read, waves, finite):
    if not ok:
      results[path] = (f'{path}: non-finite features: '
                       f'{features_lib.non_finite_reason(wave, classifier.params)}')
      continue
    p, e = next(outputs)
    if np.all(np.isfinite(p)) and np.all(np.isfinite(e)):
      results[path] = (p, e)
    else:
      results[path] = f"{path}: the model's outputs are non-finite (NaN or Inf)"
  for path in paths:
    yield path, results[path]


def check_args(argv: list[str]) -> list[str]:
  """The files to predict, once every flag is known to be usable.

  Raises:
    ConfigError: a missing --workdir, no files, or a bad flag value.
  """
  if flags.FLAGS.workdir is None:
    raise ConfigError('--workdir is required')
  files = expand(argv[1:])
  if not files:
    raise ConfigError('give audio files or folders to predict')
  check_batch_size(flags.FLAGS.batch_size, parallel.make_mesh(jax.local_devices()),
                   '--batch_size')
  if flags.FLAGS.embeddings is not None:
    check_embeddings_path(flags.FLAGS.embeddings)
  return files


def prediction_line(path: str, probs: np.ndarray, classes, index: int) -> dict:
  """The output line of a predicted file."""
  return {'file': path, 'emotion': classes[int(np.argmax(probs))],
          'probabilities': {c: round(float(v), 6) for c, v in zip(classes, probs)},
          'index': index}


@cli.exits_on_error
def main(argv):
  files = check_args(argv)
  classifier = Classifier.from_workdir(flags.FLAGS.workdir)
  # No batch larger than the files need: a huge --batch_size is no memory bomb.
  devices = classifier.mesh.devices.size
  batch_size = min(flags.FLAGS.batch_size, -(-len(files) // devices) * devices)

  # A group at a time; each file's line is printed as soon as it is known.
  group = GROUP_BATCHES * batch_size
  z_rows = []  # [dim] each: row `index` of the --embeddings array
  for start in range(0, len(files), group):
    for path, result in predict_group(classifier, files[start:start + group], batch_size):
      if isinstance(result, str):
        line = {'file': path, 'error': result}
      else:
        line = prediction_line(path, result[0], classifier.classes, len(z_rows))
        z_rows.append(result[1])
      print(json.dumps(line, allow_nan=False), flush=True)

  if not z_rows:
    raise JaxserError(f'no file could be predicted (of {len(files)})')
  if flags.FLAGS.embeddings is not None:
    save_embeddings(flags.FLAGS.embeddings, np.stack(z_rows))
  if len(z_rows) < len(files):
    message = f'{len(files) - len(z_rows)} of {len(files)} files could not be predicted'
    if not flags.FLAGS.allow_failures:
      raise JaxserError(f'{message} (--allow_failures: exit 0 all the same)')
    print(f'jaxser: {message}', file=sys.stderr)


if __name__ == '__main__':
  cli.run(main, define_flags)
