"""Data-parallel overhead: the training step on 1, 2 and 4 (simulated) devices.

Usage:
  python bench/data_parallel.py [--devices 1,2,4] [--kind mel] [--frames 400]
      [--batch 32] [--repeats 3]

For each device count it starts a fresh process with
`XLA_FLAGS=--xla_force_host_platform_device_count=N` (on a CPU; on a GPU or
TPU host it uses the first N real devices instead) and times the package's
sharded train step (`jaxser.steps.make_steps` over `jaxser.parallel`'s mesh,
the state replicated, the global batch split over the devices) for the paper
model and config at the same global batch. It prints utterances per second,
the step time and the ratio to 1 device.

On a CPU the simulated devices share the same cores, so this measures what
splitting the batch and the cross-device reductions cost, not a speed-up.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(args) -> None:
  """One device count, in this process: prints one JSON line."""
  sys.path[:0] = [ROOT, os.path.join(ROOT, 'bench')]
  import jax  # pylint: disable=g-import-not-at-top

  from jaxser.configs import default as default_config  # pylint: disable=g-import-not-at-top
  from jaxser import config_lib  # pylint: disable=g-import-not-at-top
  from jaxser import parallel  # pylint: disable=g-import-not-at-top
  from jaxser import steps  # pylint: disable=g-import-not-at-top
  from jaxser import train  # pylint: disable=g-import-not-at-top
  import train_step as bench  # pylint: disable=g-import-not-at-top

  devices = jax.devices()[:args.child]
  if len(devices) < args.child:
    print(json.dumps({'devices': args.child, 'error': f'only {len(devices)} devices'}))
    return
  mesh = parallel.make_mesh(devices)
  parallel.check_divisible(args.batch, mesh)
  config = default_config.get_config()
  config.features.kind = args.kind
  model = config_lib.create_model(config, num_classes=4)
  state = parallel.replicate(
      train.create_train_state(config, model, bench.BINS[args.kind]), mesh)
  train_fn, _ = steps.make_steps(config, mesh)
  hparams = parallel.replicate(config_lib.step_hparams(config, bench.CLASS_WEIGHTS), mesh)
  batch = parallel.global_batch(
      bench.make_batch(args.batch, args.frames, bench.BINS[args.kind]), mesh)
  start = time.perf_counter()
  compiled = train_fn.lower(state, batch, hparams).compile()
  compile_s = time.perf_counter() - start
  state, out = compiled(state, batch, hparams)  # warm-up
  jax.block_until_ready(out)
  times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    for _ in range(args.steps):
      state, out = compiled(state, batch, hparams)
    jax.block_until_ready(out)
    times.append((time.perf_counter() - start) / args.steps)
  print(json.dumps({
      'devices': len(devices), 'platform': devices[0].platform,
      'per_device': args.batch // len(devices), 'compile_s': compile_s,
      'step_s': min(times), 'median_s': sorted(times)[len(times) // 2],
      'utt_per_s': args.batch / min(times)}), flush=True)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--devices', default='1,2,4')
  parser.add_argument('--kind', default='mel', choices=('mel', 'stft'))
  parser.add_argument('--frames', type=int, default=400)
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--steps', type=int, default=3, help='steps per round')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--child', type=int, default=0, help=argparse.SUPPRESS)
  # `./launch.sh bench` passes its flags to every script; ignore the others'.
  args, _ = parser.parse_known_args(argv)
  if args.child:
    child(args)
    return
  counts = [int(n) for n in args.devices.split(',')]
  print(f'data-parallel train step, {args.kind} batch {args.batch} x '
        f'{args.frames} frames, paper model; best of {args.repeats} rounds of '
        f'{args.steps} steps; load average {os.getloadavg()[0]:.1f}', flush=True)
  base = None
  for n in counts:
    env = dict(os.environ)
    import jax  # pylint: disable=g-import-not-at-top (only for the backend)
    if jax.default_backend() == 'cpu':
      env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') +
                          f' --xla_force_host_platform_device_count={n}').strip()
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), f'--child={n}',
         f'--kind={args.kind}', f'--frames={args.frames}', f'--batch={args.batch}',
         f'--steps={args.steps}', f'--repeats={args.repeats}'],
        env=env, capture_output=True, text=True, check=False)
    lines = [l for l in out.stdout.splitlines() if l.startswith('{')]
    if out.returncode or not lines:
      print(f'  {n} devices: failed\n{out.stderr[-2000:]}')
      continue
    r = json.loads(lines[-1])
    if 'error' in r:
      print(f'  {n} devices: {r["error"]}')
      continue
    base = base or r['utt_per_s']
    print(f'  {r["devices"]} {r["platform"]} device(s), {r["per_device"]:3d} per device: '
          f'{r["utt_per_s"]:7.2f} utt/s  step {1e3 * r["step_s"]:6.0f} ms '
          f'(median {1e3 * r["median_s"]:6.0f})  compile {r["compile_s"]:.1f} s  '
          f'x{r["utt_per_s"] / base:.2f} of 1 device', flush=True)


if __name__ == '__main__':
  main()
