"""Feature throughput: jaxser's batched log-Mel against the authors' librosa loop.

Usage: python bench/features.py [--utterances 64] [--seconds 4] [--repeats 5]

Prints utterances per second for each, measured in the same process on the
same 64 four-second signals, and their ratio (jaxser / librosa).
"""
import argparse
import time

import jax
import librosa
import numpy as np

from jaxser import features


def librosa_log_mel(y, mel_basis):
  """The authors' recipe, one utterance at a time (SPEC.md section 1)."""
  power = np.abs(librosa.stft(y, n_fft=1024, hop_length=160, win_length=640,
                              window='hamming', center=True)) ** 2
  return librosa.power_to_db(mel_basis @ power)


def best_of(fn, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times), float(np.median(times))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--utterances', type=int, default=64)
  parser.add_argument('--seconds', type=float, default=4.0)
  parser.add_argument('--repeats', type=int, default=5)
  args, _ = parser.parse_known_args()

  rng = np.random.default_rng(0)
  n = int(args.seconds * features.SAMPLE_RATE)
  waves = (0.1 * rng.standard_normal((args.utterances, n))).astype(np.float32)
  lengths = np.full(args.utterances, n, np.int32)
  mel_basis = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=128)

  def run_librosa():
    for y in waves:
      librosa_log_mel(y, mel_basis)

  def run_jaxser():
    jax.block_until_ready(features.log_mel(waves, lengths))

  start = time.perf_counter()
  run_jaxser()
  compile_s = time.perf_counter() - start
  run_librosa()  # warm-up (numba, FFT plans)
  lib_best, lib_med = best_of(run_librosa, args.repeats)
  jax_best, jax_med = best_of(run_jaxser, args.repeats)
  rate = lambda t: args.utterances / t
  print(f'features: {args.utterances} utterances x {args.seconds:g} s, '
        f'best of {args.repeats} (median in brackets), backend={jax.default_backend()}')
  print(f'  librosa loop   {rate(lib_best):8.1f} utt/s  ({rate(lib_med):.1f})')
  print(f'  jaxser log_mel {rate(jax_best):8.1f} utt/s  ({rate(jax_med):.1f})  '
        f'first call incl. compile {compile_s:.2f} s')
  print(f'  ratio jaxser/librosa {lib_best / jax_best:.2f}x  '
        f'({lib_med / jax_med:.2f}x on medians)')


if __name__ == '__main__':
  main()
