"""Training-step throughput: jaxser's jitted step against the PyTorch peer.

Usage:
  python bench/train_step.py [--peer] [--frames 400,1400] [--kinds mel,stft]
      [--batch 32] [--steps N] [--repeats 3] [--no-memory] [--xla-defaults]
      [--gru-cells flax,tf1] [--robust] [--wave]

For each input kind (mel = 128 bins, stft = 513 bins) and padded length, it
builds the paper model with the paper config (`jaxser/configs/default.py`: centre
loss on, lambda 0.3, alpha 0.5, Adam 3e-4) and a batch like the peer's
(random features, lengths uniform in [T/2, T] with one at T, random labels),
compiles `jaxser.steps.make_steps`' train step ahead of time with the
package's XLA options (`jaxser.xla_options.compiler_options`; `--xla-defaults`
leaves XLA's defaults), then, after one warm-up step, times `--steps` steps
per round (by default as many as fill about 4 s, at least one) over
`--repeats` rounds and reports the best round and the median. With `--peer`
(needs torch) the PyTorch peer's model and step run in the same process,
interleaved round by round with jaxser's, and the ratio jaxser / peer is
printed. `--gru-cells flax,tf1` also times the model with TF1's GRU cell
(`model.gru_cell='tf1'`, the authors' code's; both run on the same fast BiGRU
kernel) and prints its ratio to the default Flax cell; `--robust` times the
step with the robust-training measures on (SpecAugment masks, level and
tilt, per-utterance normalisation) and prints its ratio to the plain step;
`--wave` times the step on waveform batches whose features it computes
(jaxser-wave: `config.wave_augment.features_in_step`) and with the waveform
augmentation on as well (jaxser-waveaug: noise, speed, reverberation, each
on every utterance), with their ratios to the step on cached features. `--eval` times the
batched inference step instead
(`bench/eval_step.py` does that). The machine's load average is printed
before and after each size: on a shared machine, trust the ratios more than
the absolute numbers.

Peak memory is measured in fresh child processes, one per framework and
size: how far the resident set rises during one step above its level between
steps, and the process's peak RSS (imports, model, compile and steps
included). jaxser's line also gives the step's buffers as planned by XLA
(arguments + outputs + temporaries).
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from jaxser.configs import default as default_config
from jaxser import config_lib
from jaxser import input_pipeline
from jaxser import xla_options
from jaxser import standardize
from jaxser import steps
from jaxser import train

BINS = {'mel': 128, 'stft': 513}
CLASS_WEIGHTS = (1.0, 1.5, 1.0, 1.5)  # the peer's
# The robust-training measures of docs/results.md (`--robust`).
ROBUST_AUGMENT = dict(time_masks=2, time_mask_width=20, freq_masks=2, freq_mask_width=12,
                      gain_db=6.0, tilt_db=6.0)
# `--wave`: the waveform augmentation, on every utterance (its most costly).
WAVE_AUGMENT = dict(noise_probability=1.0, speed_factors='0.9,1.0,1.1',
                    reverb_probability=1.0)


def _import_peer():
  """`bench/peers/torch_peer.py`: the same model and step in plain PyTorch."""
  sys.path.insert(0, os.path.join(ROOT, 'bench', 'peers'))
  import torch_peer  # pylint: disable=g-import-not-at-top
  return torch_peer


def make_batch(batch: int, frames: int, bins: int, seed: int = 0) -> dict:
  """A numpy batch shaped like the peer's: lengths in [T/2, T], one at T."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(frames // 2, frames + 1, size=batch).astype(np.int32)
  lengths[0] = frames
  return {
      'features': rng.standard_normal((batch, frames, bins), np.float32),
      'frame_lengths': lengths,
      'labels': rng.integers(0, 4, size=batch).astype(np.int32),
      'mask': np.ones(batch, bool),
  }


def waveform_batch(batch: dict, params) -> dict:
  """Noise waveforms of the batch's frame lengths, padded as the training
  input pads them (`input_pipeline.pad_waveform_batch`)."""
  rng = np.random.default_rng(1)
  frames = batch['features'].shape[1]
  num_samples = ((batch['frame_lengths'] - 1) * params.hop_length).astype(np.int32)
  width = input_pipeline.waveform_width(frames, params)
  waves = 0.1 * rng.standard_normal((len(num_samples), width), np.float32)
  waves[np.arange(width)[None, :] >= num_samples[:, None]] = 0.0
  return {'waveforms': waves, 'num_samples': num_samples, 'labels': batch['labels'],
          'mask': batch['mask']}


def _xla_bytes(compiled) -> int | None:
  """Arguments + outputs + temporaries of a compiled program, minus aliases."""
  try:
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes +
               m.temp_size_in_bytes - m.alias_size_in_bytes)
  except Exception:  # pylint: disable=broad-except
    return None


def _flops(compiled) -> float | None:
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost['flops'])
  except Exception:  # pylint: disable=broad-except
    return None


class JaxserRunner:
  """The jitted train (or eval) step on one batch, compiled ahead of time."""

  def __init__(self, kind: str, batch: dict, *, evaluate: bool = False,
               xla_options: bool = True, gru_cell: str = 'flax', robust: bool = False,
               wave: str = ''):
    self.name = 'jaxser-robust' if robust else f'jaxser-{wave}' if wave else (
        'jaxser' if gru_cell == 'flax' else f'jaxser-{gru_cell}')
    config = default_config.get_config()
    config.features.kind = kind
    config.model.gru_cell = gru_cell
    if robust:  # docs/results.md's robust-training measures
      config.input_augment.update(ROBUST_AUGMENT)
      config.model.utterance_norm = 'mean_var'
    if wave:
      config.wave_augment.features_in_step = True
      if wave == 'waveaug':
        config.wave_augment.update(WAVE_AUGMENT)
      batch = waveform_batch(batch, config_lib.feature_params(config))
    model = config_lib.create_model(config, num_classes=4)
    self.state = train.create_train_state(config, model, BINS[kind])
    train_fn, eval_fn = steps.make_steps(config)
    self.batch = jax.device_put(batch)
    self.evaluate = evaluate
    self.args = (self.batch,)
    if evaluate:
      self.args = ({k: self.batch[k] for k in ('features', 'frame_lengths')},)
    else:
      self.args += (jax.device_put(config_lib.step_hparams(
          config, CLASS_WEIGHTS, standardize.Standardizer(
          np.zeros(BINS[kind], np.float32), np.ones(BINS[kind], np.float32)))),)
    fn = eval_fn if evaluate else train_fn
    if not xla_options:
      # make_steps' jits carry the package's XLA options
      # (xla_options.compiler_options); re-jit the same function without them.
      fn = jax.jit(fn.__wrapped__, donate_argnums=() if evaluate else 0)
    start = time.perf_counter()
    self.compiled = fn.lower(self.state, *self.args).compile()
    self.compile_s = time.perf_counter() - start
    self.xla_bytes = _xla_bytes(self.compiled)
    self.flops = _flops(self.compiled)

  def run(self, steps: int) -> None:
    for _ in range(steps):
      if self.evaluate:
        out = self.compiled(self.state, *self.args)
      else:
        self.state, out = self.compiled(self.state, *self.args)
    jax.block_until_ready(out)


class PeerRunner:
  """The PyTorch peer's model and step (`torch_peer.main`'s), eager."""

  name = 'peer'

  def __init__(self, kind: str, batch: dict, *, evaluate: bool = False):
    torch_peer = _import_peer()
    import torch  # pylint: disable=g-import-not-at-top
    self.torch = torch
    torch.manual_seed(0)
    self.model = torch_peer.Peer(BINS[kind])
    self.opt = torch.optim.Adam(self.model.parameters(), 3e-4)
    self.centers = torch.zeros(4, 64)
    self.weights = torch.tensor(CLASS_WEIGHTS)
    self.x = torch.from_numpy(batch['features'])
    self.lengths = torch.from_numpy(batch['frame_lengths'].astype(np.int64))
    self.y = torch.from_numpy(batch['labels'].astype(np.int64))
    self.evaluate = evaluate
    self.compile_s = 0.0
    self.xla_bytes = None
    self.flops = None

  def _train_step(self):
    """Verbatim the step of torch_peer.main (lambda 0.3, alpha 0.5)."""
    torch, nn = self.torch, self.torch.nn
    lam, alpha = 0.3, 0.5
    x, lengths, y, weights = self.x, self.lengths, self.y, self.weights
    centers = self.centers
    self.opt.zero_grad()
    logits, z = self.model(x, lengths)
    w = weights[y]
    ce = nn.functional.cross_entropy(logits, y, reduction='none')
    ce = (ce * w).sum() / w.sum()
    cl = (((z - centers[y]) ** 2).sum(-1) * w).sum() / w.sum()
    (ce + lam * cl).backward()
    self.opt.step()
    with torch.no_grad():
      for j in range(4):
        m = y == j
        if m.any():
          centers[j] = (1 - alpha) * centers[j] + alpha * z[m].mean(0)

  def run(self, steps: int) -> None:
    for _ in range(steps):
      if self.evaluate:
        with self.torch.no_grad():
          self.model(self.x, self.lengths)
      else:
        self._train_step()


def _runner(name: str, kind: str, batch: dict, args):
  """'peer', 'jaxser' (the Flax GRU cell), 'jaxser-<cell>', 'jaxser-robust',
  'jaxser-wave' or 'jaxser-waveaug'."""
  if name == 'peer':
    return PeerRunner(kind, batch, evaluate=args.eval)
  if name in ('jaxser-wave', 'jaxser-waveaug'):
    return JaxserRunner(kind, batch, xla_options=args.xla_options,
                        wave=name.partition('-')[2])
  if name == 'jaxser-robust':
    return JaxserRunner(kind, batch, evaluate=args.eval, xla_options=args.xla_options,
                        robust=True)
  cell = name.partition('-')[2] or 'flax'
  return JaxserRunner(kind, batch, evaluate=args.eval,
                      xla_options=args.xla_options, gru_cell=cell)


def _names(args, peer: bool) -> list[str]:
  """The runners of a size: jaxser with each GRU cell, then the peer."""
  names = ['jaxser' if cell == 'flax' else f'jaxser-{cell}' for cell in args.gru_cells]
  names += ['jaxser-robust'] if args.robust else []
  names += ['jaxser-wave', 'jaxser-waveaug'] if args.wave and not args.eval else []
  return names + (['peer'] if peer else [])


def _proc_status_bytes(field: str) -> int:
  """`VmRSS` or `VmHWM` (peak RSS) of this process, from /proc/self/status."""
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith(field + ':'):
        return int(line.split()[1]) * 1024  # kB
  raise KeyError(field)


def _settled_rss(timeout: float = 3.0) -> int:
  """VmRSS once it stops falling: buffers are freed just after a step ends."""
  rss, deadline = _proc_status_bytes('VmRSS'), time.perf_counter() + timeout
  while time.perf_counter() < deadline:
    time.sleep(0.1)
    now = _proc_status_bytes('VmRSS')
    if now >= rss - 2**20:
      return min(now, rss)
    rss = now
  return rss


def _reset_peak_rss() -> bool:
  """Resets VmHWM to the current RSS (Linux >= 4.0); False if not allowed."""
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
    return True
  except OSError:
    return False


def _child(args) -> None:
  """Peak memory of one framework and size in a fresh process, as JSON.

  `process_peak`: the process's peak RSS (imports, model, compile, steps).
  `step_peak`: how far RSS rises above its level between steps while one
  step runs (the step's activations, gradients and temporaries), when
  /proc/self/clear_refs lets the peak be reset.
  """
  kind, frames = args.kinds[0], args.frames[0]
  batch = make_batch(args.batch, frames, BINS[kind])
  runner = _runner(args.child, kind, batch, args)
  runner.run(2)
  between = _settled_rss()
  step_peak = None
  if _reset_peak_rss():
    runner.run(1)
    step_peak = _proc_status_bytes('VmHWM') - between
  print(json.dumps({'process_peak': _proc_status_bytes('VmHWM'),
                    'step_peak': step_peak}))


def measure_memory(name: str, kind: str, frames: int, args) -> dict | None:
  """Runs `_child` in a fresh process; None if it failed."""
  cmd = [sys.executable, os.path.abspath(__file__), '--child', name,
         '--kinds', kind, '--frames', str(frames), '--batch', str(args.batch)]
  if args.eval:
    cmd.append('--eval')
  if not args.xla_options:
    cmd.append('--xla-defaults')
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if proc.returncode != 0:
    print(f'  (memory child for {name} failed: {proc.stderr.strip()[-300:]})')
    return None
  return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_one(kind: str, frames: int, args, peer: bool) -> dict:
  """Interleaved best-of-`repeats` rounds of steps for one size."""
  batch = make_batch(args.batch, frames, BINS[kind])
  runners = [_runner(name, kind, batch, args) for name in _names(args, peer)]
  steps = {}
  for r in runners:  # warm-up: the first executions allocate, fill caches
    start = time.perf_counter()
    r.run(1)
    warm = time.perf_counter() - start
    steps[r.name] = args.steps or max(1, min(8, int(4.0 / warm)))
  times = {r.name: [] for r in runners}
  for _ in range(args.repeats):
    for r in runners:
      start = time.perf_counter()
      r.run(steps[r.name])
      times[r.name].append((time.perf_counter() - start) / steps[r.name])
  result = {'kind': kind, 'frames': frames, 'steps': steps}
  for r in runners:
    best, median = min(times[r.name]), float(np.median(times[r.name]))
    result[r.name] = {
        'utt_s': args.batch / best, 'utt_s_median': args.batch / median,
        'step_s': best, 'compile_s': r.compile_s, 'xla_bytes': r.xla_bytes,
        'gflops': None if r.flops is None else r.flops / best / 1e9,
    }
  return result


def _mib(n):
  return 'n/a' if n is None else f'{n / 2**20:.0f} MiB'


def report(result: dict, args) -> None:
  """Prints one size's lines."""
  what = 'eval' if args.eval else 'train'
  kind, frames = result['kind'], result['frames']
  print(f'{what} {kind} ({BINS[kind]} bins) batch {args.batch} x {frames} '
        f'frames, load average {result["load"][0]:.1f} -> '
        f'{result["load"][1]:.1f}:')
  names = [name for name in result if name.startswith(('jaxser', 'peer'))]
  for name in names:
    r = result[name]
    line = (f'  {name:10s} {r["utt_s"]:8.2f} utt/s (median '
            f'{r["utt_s_median"]:.2f})  step {r["step_s"] * 1e3:7.0f} ms '
            f'x{result["steps"][name]}')
    if name != 'peer':
      line += (f'  compile {r["compile_s"]:.1f} s  XLA buffers '
               f'{_mib(r["xla_bytes"])}')
      if r['gflops']:
        line += f'  {r["gflops"]:.0f} GFLOP/s'
    if r.get('memory'):
      line += (f'  peak RSS: step +{_mib(r["memory"]["step_peak"])}, '
               f'process {_mib(r["memory"]["process_peak"])}')
    print(line, flush=True)
  pairs = [(name, 'peer') for name in names if name != 'peer' and 'peer' in result]
  pairs += [(name, 'jaxser') for name in names
            if name.startswith('jaxser-') and 'jaxser' in result]
  for a, b in pairs:
    ratio = result[a]['utt_s'] / result[b]['utt_s']
    median = result[a]['utt_s_median'] / result[b]['utt_s_median']
    print(f'  ratio {a}/{b} {ratio:.2f}x  ({median:.2f}x on medians)', flush=True)


def parse_args(argv=None, evaluate: bool = False):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--peer', action='store_true',
                      help='also run the PyTorch peer (needs torch)')
  parser.add_argument('--frames', default='400,1400',
                      type=lambda s: [int(v) for v in s.split(',')])
  parser.add_argument('--kinds', default='mel,stft',
                      type=lambda s: s.split(','))
  parser.add_argument('--batch', type=int, default=64 if evaluate else 32)
  parser.add_argument('--steps', type=int, default=0,
                      help='steps per round; 0: about 4 s worth')
  parser.add_argument('--repeats', type=int, default=3,
                      help='rounds; best and median reported')
  parser.add_argument('--no-memory', dest='memory', action='store_false',
                      help='skip the peak-memory child processes')
  parser.add_argument('--eval', action='store_true', default=evaluate,
                      help='time the inference step instead')
  parser.add_argument('--xla-defaults', dest='xla_options',
                      action='store_false',
                      help="compile without jaxser's XLA options")
  parser.add_argument('--gru-cells', default='flax',
                      type=lambda s: s.split(','),
                      help="jaxser's GRU cells to time: flax, tf1 (model.gru_cell)")
  parser.add_argument('--robust', action='store_true',
                      help='also time the step with SpecAugment, level and tilt and '
                      'per-utterance normalisation on (jaxser-robust)')
  parser.add_argument('--wave', action='store_true',
                      help='also time the step on waveform batches, its features '
                      'computed in it, without and with waveform augmentation')
  parser.add_argument('--json', default='', help='also write results here')
  parser.add_argument('--child', default='', help=argparse.SUPPRESS)
  args, _ = parser.parse_known_args(argv)  # launch.sh passes its flags to all
  return args


def main(argv=None, evaluate: bool = False):
  args = parse_args(argv, evaluate)
  if args.child:
    _child(args)
    return
  peer = args.peer
  if peer:
    try:
      _import_peer()
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      print(f'--peer: cannot import the PyTorch peer ({e}); jaxser only. '
            f'Install it with: pip install torch==2.13.0')
      peer = False
    else:
      print(f'peer: torch {torch.__version__}, '
            f'{torch.get_num_threads()} threads')
  print(f'jax {jax.__version__} backend={jax.default_backend()} '
        f'devices={jax.devices()} cpus={os.cpu_count()} '
        f'XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}')
  print('compiler options: ' + (', '.join(
      f'{kind} {xla_options.compiler_options(num_bins=BINS[kind])}'
      for kind in args.kinds) if args.xla_options else 'XLA defaults'))
  print(f'best and median of {args.repeats} interleaved rounds; env: '
        + (' '.join(f'{k}={v}' for k, v in os.environ.items()
                    if k.startswith(('GLIBC_', 'MALLOC_'))) or 'default'),
        flush=True)
  results = []
  for kind in args.kinds:
    for frames in args.frames:
      load = os.getloadavg()[0]
      result = bench_one(kind, frames, args, peer)
      result['load'] = (load, os.getloadavg()[0])
      if args.memory:
        for name in _names(args, peer):
          result[name]['memory'] = measure_memory(name, kind, frames, args)
      report(result, args)
      results.append(result)
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=1)


if __name__ == '__main__':
  main()
