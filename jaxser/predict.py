"""Predicts emotions of audio files with a trained workdir.

  python -m jaxser.predict --workdir=/tmp/ser a.wav more_audio/ [--embeddings z.npy]

Prints one JSON line per file: the predicted emotion, the class probabilities
and `index`, the file's row in the --embeddings array; or, for a file that
cannot be predicted, `{"file": ..., "error": ...}` (the others go on). A file
cannot be predicted when it cannot be read (missing, unreadable, empty,
non-finite samples), when its features are not finite (a finite waveform whose
power overflows float32) or when the model's outputs for it are not finite.
The output is strict JSON (never NaN). At the end, stderr says how many files
could not be predicted; the exit status is non-zero only if none could, or for
a bad argument or workdir, which ends in one line `jaxser: <message>` before
any file is read.

Uses the best checkpoint (the latest if no dev evaluation ran) with the
features and standardisation saved in it. Files are read and predicted a few
batches at a time, each cut to the samples its features read
(`features.crop_waveform`), so memory does not grow with the number or length
of the files beyond reading one file.
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
from jaxser import evaluate
from jaxser import features as features_lib
from jaxser import fileio
from jaxser import input_pipeline
from jaxser import parallel
from jaxser.errors import ConfigError
from jaxser.errors import JaxserError

__all__ = ['Predictor', 'define_flags', 'main']


def define_flags():
  """The command's flags (defined only when run as a program)."""
  flags.DEFINE_string('workdir', None, 'A trained workdir.')
  flags.DEFINE_string('embeddings', None,
                      'Save the embeddings z of the predicted files (row '
                      '`index` of each) to this .npy file.')
  flags.DEFINE_integer('batch_size', 32, 'Utterances per batch.')

AUDIO_SUFFIXES = ('.wav', '.flac', '.ogg', '.aiff', '.aif')
GROUP_BATCHES = 4  # Files read at once, in batches: holds a few batches' audio.


def local_mesh() -> jax.sharding.Mesh:
  """The devices of this process, over which batches are split."""
  return parallel.make_mesh(jax.local_devices())


def check_batch_size(batch_size: int, mesh, what: str = 'batch_size') -> None:
  """Refuses a batch size the batches cannot have.

  Raises:
    ConfigError: `batch_size` is below 1 (no batch would run, and nothing
      would be predicted) or does not divide by the devices of `mesh`.
  """
  if batch_size < 1:
    raise ConfigError(f'{what}={batch_size}: must be at least 1')
  parallel.check_divisible(batch_size, mesh, what)


class Predictor:
  """A restored model with its features and standardiser.

  `Predictor(workdir)(waveforms, batch_size)` gives the class probabilities
  and the embeddings z of 16 kHz mono waveforms (as `audio.load` returns).
  Batches are split over this process's devices (`jax.local_devices()`), so
  the batch size must divide by their number.

  Attributes:
    classes: the class names, in the order of the probabilities' columns.
    params: the feature parameters the model was trained with.
  """

  def __init__(self, workdir: str):
    """Restores the selected checkpoint of `workdir`.

    Raises:
      CheckpointError: no (complete) checkpoint that this code can restore.
    """
    record, state = evaluate.restore_selected(workdir)
    self.config = record.config_dict()
    self.classes = list(record.classes)
    self.params = record.features
    self.standardizer = record.standardizer
    self.mesh = local_mesh()
    self.state = parallel.replicate(state, self.mesh)
    self._eval = evaluate.make_eval_step(self.mesh)

  def __call__(self, waveforms, batch_size: int = 32):
    """Probabilities and embeddings of waveforms.

    Args:
      waveforms: a list of 1-D float arrays of 16 kHz samples, or one such
        array (one utterance).
      batch_size: utterances per batch: at least 1, divisible by the number
        of local devices.

    Returns:
      `(probs [n, classes], embeddings [n, dim])` float32, in the order of
      `waveforms`. A waveform whose features are not finite (its power
      overflows float32) gets non-finite rows: check with `np.isfinite`.

    Raises:
      ConfigError: a batch size below 1 or not divisible by the devices.
      ValueError: a waveform that is not 1-D or has no samples.
    """
    check_batch_size(batch_size, self.mesh)
    if getattr(waveforms, 'ndim', None) == 1:
      waveforms = [waveforms]
    return self.predict_features(self.features(waveforms), batch_size)

  def features(self, waveforms) -> list[np.ndarray]:
    """The model's features `[frames_i, bins]` of a list of waveforms."""
    return features_lib.extract_numpy(waveforms, self.params)

  def predict_features(self, feats: list[np.ndarray], batch_size: int):
    """`(probs [n, classes], embeddings [n, dim])` of features, in order."""
    examples = input_pipeline.Examples(feats, np.zeros(len(feats), np.int32),
                                       np.arange(len(feats)), self.standardizer)
    out = evaluate.outputs(self._eval, self.state, examples, batch_size=batch_size,
                           buckets=self.config.buckets, mesh=self.mesh,
                           every_process=False)
    if not feats:  # no batch ran: empty outputs of the right widths
      return (np.zeros((0, len(self.classes)), np.float32),
              np.zeros((0, self.config.model.embedding_dim), np.float32))
    return np.asarray(jax.nn.softmax(out['logits'])), out['embeddings']


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


def predict_group(predictor: Predictor, paths: list[str], batch_size: int):
  """Yields `(path, error)` for unreadable files, then `(path, (p, z) or error)`.

  Only finite features reach the model, and only finite outputs are returned.
  """
  read, waves, errors = read_group(paths, predictor.params)
  yield from errors
  feats = predictor.features(waves)
  finite = [bool(np.all(np.isfinite(f))) for f in feats]
  probs, z = predictor.predict_features(
      [f for f, ok in zip(feats, finite) if ok], batch_size)
  outputs = iter(zip(probs, z))
  for path, wave, ok in zip(read, waves, finite):
    if not ok:
      yield path, (f'{path}: non-finite features: '
                   f'{features_lib.non_finite_reason(wave, predictor.params)}')
      continue
    p, e = next(outputs)
    if np.all(np.isfinite(p)) and np.all(np.isfinite(e)):
      yield path, (p, e)
    else:
      yield path, f"{path}: the model's outputs are non-finite (NaN or Inf)"


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
  check_batch_size(flags.FLAGS.batch_size, local_mesh(), '--batch_size')
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
  predictor = Predictor(flags.FLAGS.workdir)
  # No batch larger than the files need: a huge --batch_size is no memory bomb.
  devices = predictor.mesh.devices.size
  batch_size = min(flags.FLAGS.batch_size, -(-len(files) // devices) * devices)

  # A group at a time; each file's line is printed as soon as it is known.
  group = GROUP_BATCHES * batch_size
  z_rows = []  # [dim] each: row `index` of the --embeddings array
  for start in range(0, len(files), group):
    for path, result in predict_group(predictor, files[start:start + group], batch_size):
      if isinstance(result, str):
        line = {'file': path, 'error': result}
      else:
        line = prediction_line(path, result[0], predictor.classes, len(z_rows))
        z_rows.append(result[1])
      print(json.dumps(line, allow_nan=False), flush=True)

  if not z_rows:
    raise JaxserError(f'no file could be predicted (of {len(files)})')
  if flags.FLAGS.embeddings is not None:
    save_embeddings(flags.FLAGS.embeddings, np.stack(z_rows))
  if len(z_rows) < len(files):
    print(f'jaxser: {len(files) - len(z_rows)} of {len(files)} files could not '
          'be predicted', file=sys.stderr)


if __name__ == '__main__':
  cli.run(main, define_flags)
