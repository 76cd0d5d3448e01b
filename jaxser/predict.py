"""Predicts emotions of audio files with a trained workdir.

  python -m jaxser.predict --workdir=/tmp/ser a.wav more_audio/ [--embeddings z.npy]

Prints one JSON line per file: the predicted emotion and the class
probabilities, or the error for a file that cannot be read (the others go on).
Uses the best checkpoint (the latest if no dev evaluation ran) with the
features and standardisation saved in it.
"""

import json
import os
import sys

from absl import app
from absl import flags
import jax
import ml_collections
import numpy as np

from jaxser import audio
from jaxser import features as features_lib
from jaxser import input_pipeline
from jaxser import parallel
from jaxser import train
from jaxser.errors import JaxserError



def define_flags():
  """The command's flags (defined only when run as a program)."""
  flags.DEFINE_string('workdir', None, 'A trained workdir.')
  flags.DEFINE_string('embeddings', None,
                      'Save the embeddings z of the readable files (in output '
                      'order) to this .npy file.')
  flags.DEFINE_integer('batch_size', 32, 'Utterances per batch.')

AUDIO_SUFFIXES = ('.wav', '.flac', '.ogg', '.aiff', '.aif')


class Predictor:
  """A restored model with its features and standardiser.

  Batches are split over this process's devices (`jax.local_devices()`), so
  the batch size must divide by their number.
  """

  def __init__(self, workdir: str):
    meta, state = train.restore_selected(workdir)
    self.config = ml_collections.ConfigDict(meta['config'])
    self.classes = meta['classes']
    self.params = features_lib.FeatureParams(**meta['features'])
    self.standardizer = features_lib.Standardizer(
        np.asarray(meta['standardizer']['mean'], np.float32),
        np.asarray(meta['standardizer']['std'], np.float32))
    self.mesh = parallel.make_mesh(jax.local_devices())
    self.state = parallel.replicate(state, self.mesh)
    self._eval = train.make_eval_step(self.mesh)

  def __call__(self, waveforms: list, batch_size: int = 32):
    """Probabilities `[n, classes]` and embeddings `[n, dim]` of waveforms.

    Raises:
      ConfigError: `batch_size` does not divide by the number of devices.
    """
    parallel.check_divisible(batch_size, self.mesh, '--batch_size')
    feats = features_lib.extract_numpy(waveforms, self.params)
    examples = input_pipeline.Examples(feats, np.zeros(len(feats), np.int32),
                                       np.arange(len(feats)), self.standardizer)
    probs = np.zeros((len(feats), len(self.classes)), np.float32)
    z = None
    for rows, batch in input_pipeline.eval_batches(
        examples, batch_size=batch_size, buckets=self.config.buckets):
      out = jax.device_get(self._eval(self.state, jax.device_put(
          batch, parallel.batch_sharding(self.mesh))))
      probs[rows] = jax.nn.softmax(out['logits'][:len(rows)])
      if z is None:
        z = np.zeros((len(feats), out['embeddings'].shape[-1]), np.float32)
      z[rows] = out['embeddings'][:len(rows)]
    return probs, z


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


def main(argv):
  if flags.FLAGS.workdir is None:
    raise app.UsageError('--workdir is required')
  files = expand(argv[1:])
  if not files:
    raise app.UsageError('give audio files or folders to predict')
  try:
    predictor = Predictor(flags.FLAGS.workdir)
    parallel.check_divisible(flags.FLAGS.batch_size, predictor.mesh, '--batch_size')
  except JaxserError as e:
    sys.exit(f'jaxser: {e}')
  waves, readable = [], []
  for path in files:
    try:
      waves.append(audio.load(path))
      readable.append(path)
    except JaxserError as e:
      print(json.dumps({'file': path, 'error': str(e)}), flush=True)
  if not waves:
    sys.exit('jaxser: none of the files could be read')
  probs, z = predictor(waves, flags.FLAGS.batch_size)
  for i, (path, p) in enumerate(zip(readable, probs)):
    print(json.dumps({
        'file': path, 'emotion': predictor.classes[int(np.argmax(p))],
        'probabilities': {c: round(float(v), 6) for c, v in zip(predictor.classes, p)},
        'index': i}), flush=True)
  if flags.FLAGS.embeddings:
    np.save(flags.FLAGS.embeddings, z)
  if len(readable) < len(files):
    print(f'jaxser: {len(files) - len(readable)} of {len(files)} files could not be read',
          file=sys.stderr)


if __name__ == '__main__':
  define_flags()
  app.run(main)
