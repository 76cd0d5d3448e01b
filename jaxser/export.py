"""Exports a trained run's inference as StableHLO, to run without jaxser's training stack.

  python -m jaxser.export --workdir=/tmp/ser --output=model.jaxser
  jaxser export --workdir=/tmp/ser --output=model.jaxser

The selected checkpoint's inference (standardisation, the CNN-BiGRU, the
softmax) is serialised with `jax.export`, one program per length bucket of
the run's config with a symbolic batch size, for the CPU, CUDA and TPU
(`--platforms`), its parameters inside. The file is a zip: `meta.json` (the
classes, the feature parameters, the buckets, the source run, the versions)
and one `bucket_<frames>.stablehlo` per bucket. `jaxser.exported.load`
runs it with jax and numpy alone: no config, no flax, no checkpoint library.
"""

import io
import json
import os
import zipfile

from absl import flags
import jax
from jax import export as jax_export
import jax.numpy as jnp

from jaxser import cli
from jaxser import evaluate
from jaxser import fileio
from jaxser import provenance
from jaxser import standardize
from jaxser.errors import ConfigError

__all__ = ['FORMAT', 'define_flags', 'export', 'main']

FORMAT = 'jaxser-exported-v1'
PLATFORMS = ('cpu', 'cuda', 'tpu')


def define_flags():
  """The command's flags (defined only when run as a program)."""
  flags.DEFINE_string('workdir', None, 'A trained workdir.')
  flags.DEFINE_string('output', None, 'The file to write (model.jaxser).')
  flags.DEFINE_list('platforms', list(PLATFORMS), 'Platforms to lower for.')


def export(workdir: str, output: str, *, platforms=PLATFORMS) -> dict:
  """Writes the exported model of `workdir`'s selected checkpoint to `output`.

  Returns:
    The file's `meta.json` content.

  Raises:
    CheckpointError: no checkpoint to export; JaxserError: `output` cannot
      be written (nothing partial is left).
  """
  record, state = evaluate.restore_selected(workdir)
  params, apply_fn, stats = state.params, state.apply_fn, record.standardizer

  def infer(features, frame_lengths):
    """Probabilities `[B, C]` and embeddings `[B, D]` of raw features."""
    x = standardize.standardize(features, frame_lengths, stats)
    logits, z = apply_fn({'params': params}, x, frame_lengths)
    return jax.nn.softmax(logits), z

  config = record.config_dict()
  buckets = sorted(int(t) for t in config.buckets)
  bins = record.features.num_bins
  (batch,) = jax_export.symbolic_shape('b')
  programs = {}
  for frames in buckets:
    exported = jax_export.export(jax.jit(infer), platforms=tuple(platforms))(
        jax.ShapeDtypeStruct((batch, frames, bins), jnp.float32),
        jax.ShapeDtypeStruct((batch,), jnp.int32))
    programs[f'bucket_{frames}.stablehlo'] = exported.serialize()
  meta = {'format': FORMAT, 'classes': list(record.classes),
          'features': record.features.to_dict(), 'buckets': buckets,
          'embedding_dim': int(config.model.embedding_dim),
          'platforms': list(platforms),
          'source': {'workdir': os.path.abspath(workdir), 'step': record.step,
                     'identity': record.identity},
          'versions': provenance.versions(), 'exported': provenance.now()}
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('meta.json', json.dumps(meta, indent=1))
    for name, blob in programs.items():
      z.writestr(name, bytes(blob))
  fileio.atomic_write(output, buffer.getvalue())
  return meta


@cli.exits_on_error
def main(argv):
  if len(argv) > 1:
    raise ConfigError(f'unexpected arguments: {argv[1:]}')
  for name in ('workdir', 'output'):
    if not getattr(flags.FLAGS, name):
      raise ConfigError(f'--{name} is required')
  unknown = sorted(set(flags.FLAGS.platforms) - set(PLATFORMS))
  if unknown:
    raise ConfigError(f'--platforms: unknown {unknown} (known: {", ".join(PLATFORMS)})')
  meta = export(flags.FLAGS.workdir, flags.FLAGS.output,
                platforms=tuple(flags.FLAGS.platforms))
  print(f'{flags.FLAGS.output}: {len(meta["buckets"])} programs (buckets '
        f'{meta["buckets"]} frames) for {", ".join(meta["platforms"])}; classes '
        f'{", ".join(meta["classes"])}')


if __name__ == '__main__':
  cli.run(main, define_flags)
