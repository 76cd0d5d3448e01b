"""Feature throughput: jaxser's batched log-Mel against the authors' librosa loop.

Usage: python bench/features.py [--utterances 64] [--seconds 4] [--rounds 5]
                                [--repeats 3]

Prints utterances per second for each, measured in the same process on the
same 64 four-second signals, and their ratio (jaxser / librosa): one
`log_mel` call on the padded batch, and `extract_numpy` on the list (as the
feature cache and `jaxser.predict` call it). Also the time of XLA's FFT
alone on the same frames, chunked as `log_mel` does: the most one `log_mel`
call could reach on this machine, since XLA:CPU runs each FFT on one thread.
"""
import argparse
import time

import jax
import jax.numpy as jnp
import librosa
import numpy as np

from jaxser import audio
from jaxser import features


def librosa_log_mel(y, mel_basis):
  """The authors' recipe, one utterance at a time (docs/method.md, Features)."""
  power = np.abs(librosa.stft(y, n_fft=1024, hop_length=160, win_length=640,
                              window='hamming', center=True)) ** 2
  return librosa.power_to_db(mel_basis @ power)


def timed(fn):
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--utterances', type=int, default=64)
  parser.add_argument('--seconds', type=float, default=4.0)
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--repeats', type=int, default=3)
  args, _ = parser.parse_known_args()

  rng = np.random.default_rng(0)
  n = int(args.seconds * audio.SAMPLE_RATE)
  waves = (0.1 * rng.standard_normal((args.utterances, n))).astype(np.float32)
  lengths = np.full(args.utterances, n, np.int32)
  wave_list = list(waves)
  mel_basis = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=128)

  # The frames log_mel transforms, chunked as it does (a few utterances per
  # chunk, `features._CHUNK_FRAMES`): [chunks, utterances x frames, 1024].
  padded = np.pad(waves, ((0, 0), (512, 512)))
  frames = np.lib.stride_tricks.sliding_window_view(padded, 1024, axis=1)[:, ::160]
  per_chunk = max(1, features._CHUNK_FRAMES // frames.shape[1]) * frames.shape[1]
  frames = frames.reshape(-1, 1024)
  frames = np.pad(frames, ((0, -len(frames) % per_chunk), (0, 0)))
  frames = jax.device_put(frames.reshape(-1, per_chunk, 1024))
  fft_only = jax.jit(lambda f: jax.lax.map(lambda x: jnp.fft.rfft(x)[..., :1].real, f))

  contestants = {
      'librosa loop': lambda: [librosa_log_mel(y, mel_basis) for y in waves],
      'jaxser log_mel': lambda: jax.block_until_ready(features.log_mel(waves, lengths)),
      'jaxser extract_numpy': lambda: features.extract_numpy(wave_list),
      'XLA rfft alone': lambda: jax.block_until_ready(fft_only(frames)),
  }
  compile_s = timed(contestants['jaxser log_mel'])
  times = {name: [] for name in contestants}
  # Round 0 warms up (compiles, numba, FFT plans, the allocator's heap) and
  # is not counted; the rounds are interleaved so that noise hits all alike.
  for round_ in range(args.rounds + 1):
    for name, fn in contestants.items():
      runs = [timed(fn) for _ in range(args.repeats)]
      times[name] += runs if round_ else []
  best = {name: min(t) for name, t in times.items()}
  med = {name: float(np.median(t)) for name, t in times.items()}
  rate = lambda t: args.utterances / t
  lib = 'librosa loop'
  print(f'features: {args.utterances} utterances x {args.seconds:g} s, best of '
        f'{args.rounds} interleaved rounds x {args.repeats} after a warm-up round '
        f'(median in brackets), '
        f'backend={jax.default_backend()}')
  for name in contestants:
    line = f'  {name:21s} {rate(best[name]):7.1f} utt/s ({rate(med[name]):7.1f})'
    if name != lib:
      line += (f'  {best[lib] / best[name]:.2f}x librosa '
               f'({med[lib] / med[name]:.2f}x on medians)')
    print(line)
  print(f'  log_mel: one call on the padded batch, first call incl. compile '
        f'{compile_s:.2f} s; extract_numpy: lists in and out, batches of 32 on '
        f'2 threads; XLA rfft alone: the FFT of the same {args.utterances * features.num_frames(n, features.FeatureParams().hop_length)} '
        f'frames, the most one log_mel call could reach')


if __name__ == '__main__':
  main()
