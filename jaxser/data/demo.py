"""The demo corpus: English acted-prosody speech synthesised with espeak-ng.

No emotional speech corpus can be downloaded offline, so jaxser makes one
(docs/corpora.md, The demo corpus) by the recipe of
`jaxser.data.demo_synthesis`: project-written sentences spoken by ten
espeak-ng voices with per-emotion prosody from the rule tables of the
emotional speech synthesis literature, jittered so that the classes overlap.

Ten voices (espeak-ng variants m1, m3, m4, m6, m7 and f1 ... f5, over American
and British English) are the speakers, paired into five sessions of one male
and one female voice, so leave-one-session-out with one speaker for dev and
the other for test works as with IEMOCAP. Class proportions follow IEMOCAP's
4-class set (1708 / 1103 / 1636 / 1084).

libespeak-ng keeps state from one utterance to the next, so utterances are
rendered in fixed chunks, each in a fresh process: the bytes depend only on
the parameters and the seed, not on the number of workers. The corpus is
written once, as 16 kHz 16-bit wav files and a manifest CSV read back by
`jaxser.data.manifest`, to a folder named after its parameters; a temporary
folder is renamed into place when complete, so an interrupted build never
passes for a finished one.
"""

import csv
import hashlib
import json
import multiprocessing
import os
import pathlib
import time
import wave

from absl import logging
import numpy as np

from jaxser import audio
from jaxser import fileio
from jaxser import progress
from jaxser.data import demo_synthesis as synthesis
from jaxser.data import demo_recipes
from jaxser.data import manifest
from jaxser.data import records

__all__ = ['NAME', 'build_demo_corpus', 'default_dir', 'read']

NAME = 'demo'
_VERSION = 1  # bump when the recipe or the build changes (no folder reused)
_DEFAULT_NUM_UTTERANCES = 800
_CHUNK = 200  # utterances rendered by one fresh process (part of the recipe)
_PARAMS_FILE = 'params.json'  # in the corpus folder; written last


def default_dir() -> str:
  """`$JAXSER_CACHE/demo`, or `~/.cache/jaxser/demo`."""
  base = os.environ.get('JAXSER_CACHE') or os.path.join(
      os.path.expanduser('~'), '.cache', 'jaxser')
  return os.path.join(base, NAME)


def read(root=None, *, num_utterances: int = _DEFAULT_NUM_UTTERANCES,
         seed: int = 0, workers: int | None = None, recipe: str = 'v1'
         ) -> tuple[list[records.Utterance], list[records.Issue]]:
  """Builds the demo corpus under `root` if needed and reads its manifest.

  Args:
    root: the cache folder (`default_dir()` when None).
    num_utterances, seed, workers, recipe: as `build_demo_corpus`.

  Returns:
    What `manifest.read` returns, with corpus 'demo'.
  """
  path = build_demo_corpus(root or default_dir(), num_utterances=num_utterances,
                           seed=seed, workers=workers, recipe=recipe)
  return manifest.read(path, corpus=NAME)


def build_demo_corpus(out_dir, *, num_utterances: int = _DEFAULT_NUM_UTTERANCES,
                      seed: int = 0, workers: int | None = None,
                      recipe: str = 'v1') -> pathlib.Path:
  """Synthesises the demo corpus once; returns its manifest CSV.

  The corpus goes to `out_dir/<name>/` where the name encodes the recipe
  version, the size, the seed and a hash of every parameter (including the
  espeak-ng version); if that folder is complete the call does nothing.

  Args:
    out_dir: the cache folder.
    num_utterances: corpus size (about 3 s each).
    seed: the same seed gives the same bytes.
    workers: processes rendering chunks in parallel (default: up to 4, one
      per CPU); does not change the result.
    recipe: `demo_recipes.RECIPES`' name: 'v1' (the first corpus), 'v2'
      (more voices, a random channel per utterance) or 'ood' (the
      out-of-domain check's voices and channels).

  Returns:
    The manifest CSV path.
  """
  num_classes = len(synthesis.CLASS_COUNTS)
  if num_utterances < num_classes:
    raise ValueError(f'num_utterances must be at least {num_classes}')
  if recipe not in demo_recipes.RECIPES:
    raise ValueError(f'demo recipe {recipe!r}: must be one of {", ".join(demo_recipes.RECIPES)}')
  out_dir = pathlib.Path(out_dir)
  params = _corpus_params(num_utterances, seed, recipe)
  digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
  version = f'v{_VERSION}' if recipe == 'v1' else recipe
  final = out_dir / f'{NAME}-{version}-n{num_utterances}-seed{seed}-{digest}'
  if _is_complete(final, params):
    logging.info('demo corpus: up to date in %s', final)
    return final / manifest.FILE_NAME
  with fileio.atomic_folder(final, lambda f: _is_complete(f, params)) as tmp:
    seconds = _render(synthesis.plan(num_utterances, seed, recipe), tmp, workers)
    (tmp / _PARAMS_FILE).write_text(json.dumps(params, indent=2, sort_keys=True))
  logging.info('demo corpus: %d utterances in %.1f s (%.0f utterances/s) in %s',
               num_utterances, seconds, num_utterances / seconds, final)
  return final / manifest.FILE_NAME


def _corpus_params(num_utterances: int, seed: int, recipe: str) -> dict:
  """Everything the corpus bytes depend on (stored in its params.json)."""
  return {
      'version': _VERSION, 'num_utterances': num_utterances, 'seed': seed,
      'chunk': _CHUNK, 'sample_rate': audio.SAMPLE_RATE,
      **synthesis.recipe_params(recipe),
  }


def _is_complete(folder: pathlib.Path, params: dict) -> bool:
  try:
    stored = json.loads((folder / _PARAMS_FILE).read_text())
  except (OSError, ValueError):
    return False
  return stored == json.loads(json.dumps(params))


# --------------------------------------------------------------------------
# Rendering: fresh processes, one chunk each.


def _render(specs: list[synthesis.UtteranceSpec], folder: pathlib.Path,
            workers: int | None) -> float:
  """Renders all specs into `folder` (wav/ and the manifest); returns seconds."""
  (folder / 'wav').mkdir()
  chunks = [specs[i:i + _CHUNK] for i in range(0, len(specs), _CHUNK)]
  workers = workers or min(4, os.cpu_count() or 1)
  lengths = {}
  start = time.perf_counter()
  # spawn: a fresh interpreter per chunk (espeak-ng's state starts clean, and
  # no JAX threads are forked).
  context = multiprocessing.get_context('spawn')
  with context.Pool(min(workers, len(chunks)), maxtasksperchild=1) as pool, \
       progress.bar(len(specs), 'demo corpus', 'utt') as bar:
    jobs = [(chunk, str(folder / 'wav')) for chunk in chunks]
    for result in pool.imap_unordered(_render_chunk, jobs):
      lengths.update(result)
      bar.update(len(result))
  seconds = time.perf_counter() - start
  _write_manifest(specs, lengths, folder / manifest.FILE_NAME)
  return seconds


def _render_chunk(job: tuple[list[synthesis.UtteranceSpec], str]
                  ) -> dict[str, int]:
  """Worker: writes each spec's wav; returns `{id: samples}`."""
  specs, wav_dir = job
  engine = synthesis.Espeak()
  lengths = {}
  dry = []  # the chunk's utterances before their channel: babble for the next
  for spec in specs:
    waveform = synthesis.render(engine, spec)
    if spec.channel is not None:
      recent = dry[-3:]
      babble = sum(np.resize(x, max(map(len, recent))) for x in recent) if recent else None
      dry.append(waveform)
      waveform = demo_recipes.apply_channel(waveform, spec.channel, babble)
    _write_wav(os.path.join(wav_dir, f'{spec.id}.wav'), waveform)
    lengths[spec.id] = len(waveform)
  return lengths


def _write_wav(path: str, waveform: np.ndarray) -> None:
  """16-bit PCM wav (the standard library's writer: libsndfile's fsyncs)."""
  pcm = np.round(np.clip(waveform, -1.0, 1.0) * 32767.0).astype('<i2')
  with wave.open(path, 'wb') as f:
    f.setnchannels(1)
    f.setsampwidth(2)
    f.setframerate(audio.SAMPLE_RATE)
    f.writeframes(pcm.tobytes())


def _write_manifest(specs: list[synthesis.UtteranceSpec], lengths: dict,
                    path: pathlib.Path) -> None:
  columns = ['id', 'path', 'label', 'speaker', 'session', 'gender',
             'improvised', 'seconds', 'voice', 'text', 'rate', 'pitch', 'range',
             'volume', 'word_gap', 'tilt', 'breath', 'gain_db', 'snr_db']
  channel = specs[0].channel is not None  # not in v1's manifest
  with open(path, 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f, lineterminator='\n')
    writer.writerow(columns + (['channel'] if channel else []))
    for s in specs:
      writer.writerow([
          s.id, f'wav/{s.id}.wav', s.label, s.speaker, s.session, s.gender,
          'false', f'{lengths[s.id] / audio.SAMPLE_RATE:.3f}', s.voice, s.text,
          s.rate, s.pitch, s.range, s.volume, s.word_gap, f'{s.tilt:.3f}',
          f'{s.breath:.3f}', f'{s.gain_db:.2f}', f'{s.snr_db:.1f}']
          + ([s.channel.to_json()] if channel else []))
