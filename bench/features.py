"""Feature throughput: jaxser's batched log-Mel against the authors' librosa loop.

Usage: python bench/features.py [--utterances 64] [--seconds 4] [--repeats 5]

Prints utterances per second for each, measured in the same process on the
same 64 four-second signals, and their ratio (jaxser / librosa): one
`log_mel` call on the padded batch, and `extract_numpy` on the list (as the
feature cache and `jaxser.predict` call it). Also the
time of XLA's FFT alone on the same frames, chunked as `log_mel` does: the
most `log_mel` could reach on this machine, since XLA:CPU runs each FFT on
one thread.
"""
import argparse
import time

import jax
import jax.numpy as jnp
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

  wave_list = list(waves)

  def run_listed():  # Lists in and out, like the librosa loop.
    features.extract_numpy(wave_list)

  # The frames log_mel transforms: [chunks, 4 utterances x frames, 640].
  padded = np.pad(waves, ((0, 0), (320, 320)))
  frames = np.lib.stride_tricks.sliding_window_view(padded, 640, axis=1)[:, ::160]
  frames = jax.device_put(np.ascontiguousarray(frames.reshape(-1, 4 * frames.shape[1], 640)))
  fft_only = jax.jit(lambda f: jax.lax.map(
      lambda x: jnp.fft.rfft(x, n=1024)[..., :1].real, f))

  def run_fft():
    jax.block_until_ready(fft_only(frames))

  run_fft()
  start = time.perf_counter()
  run_jaxser()
  compile_s = time.perf_counter() - start
  run_librosa()  # warm-up (numba, FFT plans)
  lib_best, lib_med = best_of(run_librosa, args.repeats)
  jax_best, jax_med = best_of(run_jaxser, args.repeats)
  run_listed()  # compiles the batch-32 program
  list_best, list_med = best_of(run_listed, args.repeats)
  fft_best, fft_med = best_of(run_fft, args.repeats)
  rate = lambda t: args.utterances / t
  print(f'features: {args.utterances} utterances x {args.seconds:g} s, '
        f'best of {args.repeats} (median in brackets), backend={jax.default_backend()}')
  print(f'  librosa loop   {rate(lib_best):8.1f} utt/s  ({rate(lib_med):.1f})')
  print(f'  jaxser log_mel {rate(jax_best):8.1f} utt/s  ({rate(jax_med):.1f})  '
        f'first call incl. compile {compile_s:.2f} s')
  print(f'  ratio jaxser/librosa {lib_best / jax_best:.2f}x  '
        f'({lib_med / jax_med:.2f}x on medians)')
  print(f'  jaxser extract_numpy (lists in and out, batches of 32 on 2 threads) '
        f'{rate(list_best):.1f} utt/s ({rate(list_med):.1f}): '
        f'{lib_best / list_best:.2f}x ({lib_med / list_med:.2f}x)')
  print(f'  XLA rfft alone on the same {frames.shape[0] * frames.shape[1]} frames '
        f'{fft_best * 1e3:.1f} ms ({fft_med * 1e3:.1f}): at most '
        f'{rate(fft_best):.0f} utt/s, {lib_best / fft_best:.2f}x librosa')


if __name__ == '__main__':
  main()
