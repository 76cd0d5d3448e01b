"""Peak memory of `python -m jaxser.predict` on short, long and upsampled files.

Usage:
  python bench/predict_memory.py [--workdir W] [--code ROOT] [--copies 16]
      [--keep DIR]

Each case runs the real command in its own fresh process and reports the
process's peak resident set (`ru_maxrss` from `os.wait4`: imports, restore,
compilation and prediction included) and its wall time:

  short     one 3 s 16 kHz file: what any prediction costs
  long      one 30-minute 16 kHz file (115 MB of samples)
  1hz       a 4 KB WAV of 2000 samples at 1 Hz: 33 minutes once resampled
            to 16 kHz (128 MB of samples from a 4 KB file); jaxser refuses
            rates below 4 kHz from the header (exit 1), earlier versions
            resampled it
  long x N  N copies of the 30-minute file in one command: memory must not
            grow with the number of files

Without --workdir it first trains `jaxser/configs/tiny.py` on the synthesised demo
corpus for a few steps in a temporary folder (the model's size is not what
is measured: the audio and features are). `--code` runs the command from
another checkout (`git worktree add /tmp/old <commit>`) to compare with an
earlier version of predict.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_tiny(workdir: str) -> None:
  """A few steps of the tiny config on the demo corpus: a workdir to restore."""
  subprocess.run(
      [sys.executable, '-m', 'jaxser.main', '--config=jaxser/configs/tiny.py',
       f'--workdir={workdir}', f'--config.cache_dir={workdir}_cache',
       '--config.plots=False', '--config.num_train_steps=4',
       '--config.eval_start_step=2'],
      cwd=ROOT, check=True, capture_output=True)


def write_inputs(folder: str, copies: int) -> dict[str, list[str]]:
  """The audio of each case: `{case: [paths]}`."""
  rng = np.random.default_rng(0)
  t = np.arange(3 * 16000) / 16000
  short = os.path.join(folder, 'short.wav')
  sf.write(short, (0.2 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000)
  long = os.path.join(folder, 'long.wav')
  sf.write(long, (0.1 * rng.standard_normal(30 * 60 * 16000)).astype(np.float32),
           16000, subtype='FLOAT')
  upsampled = os.path.join(folder, 'one_hz.wav')
  sf.write(upsampled, (0.1 * rng.standard_normal(2000)).astype(np.float32), 1,
           subtype='FLOAT')
  many = []
  for i in range(copies):
    many.append(os.path.join(folder, f'long_{i}.wav'))
    os.link(long, many[-1])
  return {'short': [short], 'long': [long], '1hz': [upsampled],
          f'long x {copies}': many}


# Runs argv[1:] as a child of a fresh, small process and writes the child's
# peak RSS (KiB) to $PEAK_RSS_FILE. Linux carries a process's peak across
# fork and exec, so a child forked from this process (which holds the inputs'
# samples) would report this one's size.
MEASURE = ('import os, sys; pid = os.fork() or os.execvp(sys.argv[1], sys.argv[1:]); '
           '_, status, usage = os.wait4(pid, 0); '
           "open(os.environ['PEAK_RSS_FILE'], 'w').write(str(usage.ru_maxrss)); "
           'sys.exit(os.waitstatus_to_exitcode(status))')


def peak_rss(argv: list[str], code: str) -> tuple[float, float, int]:
  """`(peak RSS in MB, seconds, exit status)` of one command in a fresh process."""
  with tempfile.NamedTemporaryFile() as peak:
    env = dict(os.environ, PYTHONPATH=code, PEAK_RSS_FILE=peak.name,
               JAX_PLATFORMS=os.environ.get('JAX_PLATFORMS', 'cpu'))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, '-c', MEASURE, *argv], cwd=code, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - start
    if proc.returncode:
      err = proc.stderr.decode(errors='replace')
      print(f'  ({" ".join(argv[2:4])}... exited {proc.returncode}: {err.strip()[-300:]})')
    return int(open(peak.name).read()) / 1024, seconds, proc.returncode


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', help='a trained workdir (default: train one)')
  parser.add_argument('--code', default=ROOT, help='the checkout whose predict runs')
  parser.add_argument('--copies', type=int, default=16, help='files of the 1hz x N case')
  parser.add_argument('--keep', help='write the inputs (and workdir) here and keep them')
  args = parser.parse_args()
  folder = args.keep or tempfile.mkdtemp(prefix='predict_memory_')
  os.makedirs(folder, exist_ok=True)
  workdir = args.workdir or os.path.join(folder, 'tiny')
  if not args.workdir and not os.path.exists(workdir):
    print(f'training {workdir} ...', flush=True)
    train_tiny(workdir)
  cases = write_inputs(tempfile.mkdtemp(dir=folder), args.copies)
  print(f'predict from {os.path.abspath(args.code)}')
  print(f'{"case":<12} {"peak RSS MB":>12} {"seconds":>8} {"exit":>5}')
  for case, paths in cases.items():
    argv = [sys.executable, '-m', 'jaxser.predict', f'--workdir={workdir}', *paths]
    mb, seconds, status = peak_rss(argv, os.path.abspath(args.code))
    print(f'{case:<12} {mb:12.0f} {seconds:8.1f} {status:5d}', flush=True)


if __name__ == '__main__':
  main()
