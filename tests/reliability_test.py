"""Fault tests: kills, bad numbers, bad workdirs, bad configs, foreign checkpoints.

Everything that concerns the command line runs the real CLI
(`python -m jaxser.main`) in a subprocess, on the tiny config and the tone
corpus, with one padded length (one compiled train step) and a checkpoint
every 2 steps. The subprocesses share a JAX persistent compilation cache
(a folder of this test module), so only the first run compiles; the others
load the same executables, which is also what makes their results comparable
bit for bit. Faults that need a hook inside the process (a NaN at step k, a
full disk) run the same CLI `main` through a small driver that patches one
function first: nothing in the package knows about tests.

docs/reliability.md lists the faults and the test that shows each.
"""

import errno
import hashlib
import json
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from jaxser.configs import tiny
from jaxser import checkpoint
from jaxser import config_lib
from jaxser import workdir as workdir_lib
from jaxser.errors import JaxserError
from jaxser import train

ROOT = pathlib.Path(__file__).resolve().parent.parent
STEPS = 12  # tiny: log and evaluate every 4 steps from step 4; save every 2


# --------------------------------------------------------------------------
# Fault-injecting drivers.

# Runs the real CLI after wrapping the jitted train step so that, at step
# AT, the centres, the parameters or the loss become VALUE (nan or inf).
NAN_DRIVER = '''
import os
from absl import app
import jax
import jax.numpy as jnp
from jaxser import cli, main, steps
where, value, at = os.environ['FAULT'].split(':')
make_steps = steps.make_steps

def faulty_make_steps(config, mesh=None):
  train_fn, eval_fn = make_steps(config, mesh)
  def step(state, batch, hparams):
    state, metrics = train_fn(state, batch, hparams)
    if int(state.step) == int(at):
      bad = jnp.float32(value)
      if where == 'centers':
        centers = state.centers._replace(centers=state.centers.centers * bad)
        state = state.replace(centers=centers)
        metrics = dict(metrics, center_max_abs=jnp.max(jnp.abs(centers.centers)))
      elif where == 'params':  # an update that overflowed; the loss was fine
        leaves, tree = jax.tree_util.tree_flatten(state.params)
        leaves[0] = leaves[0] * bad
        state = state.replace(params=jax.tree_util.tree_unflatten(tree, leaves))
      else:
        metrics = dict(metrics, loss=metrics['loss'] * bad)
    return state, metrics
  return step, eval_fn

steps.make_steps = faulty_make_steps
cli.run(main.main, main.define_flags)
'''

# Runs the real CLI with the JSON part of the Nth checkpoint save failing as
# on a full disk (after the arrays of that checkpoint were written).
ENOSPC_DRIVER = '''
import errno, os
from absl import app
from orbax.checkpoint._src.handlers import json_checkpoint_handler as handler
from jaxser import cli, main
calls = [0]
save = handler.JsonCheckpointHandler._save_fn

async def full_disk(self, x, directory):
  calls[0] += 1
  if calls[0] == int(os.environ['FAIL_AT_SAVE']):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))
  return await save(self, x, directory)

handler.JsonCheckpointHandler._save_fn = full_disk
cli.run(main.main, main.define_flags)
'''

# --------------------------------------------------------------------------
# Running the CLI: side by side, started as early as their inputs allow.
#
# Each run is mostly single-threaded start-up work (imports, data, restoring
# compiled code), so the runs are started together and checked by the tests
# afterwards: the refusals while the reference run compiles, the rest once
# it has finished (they need its compiled code or its workdir).


@pytest.fixture(scope='module')
def base(tone_manifest, tmp_path_factory):
  """The flags every training run here shares (a feature cache built once)."""
  cache = tmp_path_factory.mktemp('features')
  return ['--config=jaxser/configs/tiny.py', '--config.corpus=manifest',
          f'--config.corpus_root={tone_manifest}', f'--config.cache_dir={cache}',
          '--config.plots=False', '--config.features.max_frames=200',
          '--config.buckets=200,', '--config.checkpoint_every_steps=2',
          f'--config.num_train_steps={STEPS}', '--alsologtostderr']


def cli(workdir, base, *flags, driver=None):
  """The command line of a training run (`driver`: Python run instead)."""
  head = [sys.executable, '-c', driver] if driver else [sys.executable, '-m', 'jaxser.main']
  return head + list(base) + [f'--workdir={workdir}', *flags]


def results_of(workdir) -> dict:
  """A run's results.json less its provenance (times and paths may differ)."""
  results = json.loads((workdir / 'results.json').read_text())
  assert set(results.pop('provenance')) >= {'config', 'versions', 'started'}
  return results


def predict_cli(workdir, *files):
  return [sys.executable, '-m', 'jaxser.predict', f'--workdir={workdir}', *map(str, files)]


def start(argv, env, log, niceness=0):
  """Starts a run with its stdout and stderr going to the file `log`."""
  if niceness:  # `nice` execs the run: the process id stays the run's
    argv = ['nice', '-n', str(niceness), *argv]
  with open(log, 'w') as out:
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out,
                            stderr=subprocess.STDOUT)


def run(argv, env, log, timeout=600) -> tuple[int, str]:
  """Runs to the end: (exit status, output)."""
  proc = start(argv, env, log)
  proc.wait(timeout=timeout)
  return proc.returncode, pathlib.Path(log).read_text()


class Jobs:
  """Runs started in the background, read by the tests that check them.

  They run at a lower priority than the runs whose results others wait for
  (the reference run, the kill test's runs), which keeps those quick.
  """

  def __init__(self, env, logs):
    self.env, self.logs = env, logs
    self._procs, self._results = {}, {}

  def start(self, name, argv, niceness=10, **env):
    self._procs[name] = start(argv, dict(self.env, **env), self.logs / f'{name}.log',
                              niceness)

  def result(self, name, timeout=600) -> tuple[int, str]:
    """Waits for run `name`: (exit status, output)."""
    if name not in self._results:
      proc = self._procs[name]
      proc.wait(timeout=timeout)
      self._results[name] = (proc.returncode,
                             (self.logs / f'{name}.log').read_text())
    return self._results[name]

  def stop(self):
    for proc in self._procs.values():
      if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope='module')
def logs(tmp_path_factory):
  return tmp_path_factory.mktemp('logs')


@pytest.fixture(scope='module')
def jobs(env, logs):
  jobs = Jobs(env, logs)
  yield jobs
  jobs.stop()


def last_line(output: str) -> str:
  lines = [l for l in output.splitlines() if l.strip()]
  return lines[-1] if lines else ''


def assert_refused(status, output, *texts, orbax_logged_error=False):
  """Exit status 1, a last line `jaxser: ...` holding `texts`, no traceback.

  With `orbax_logged_error`, orbax may have logged the traceback of the
  thread that failed (before the message), as it does for a failed save.
  """
  message = last_line(output)
  assert status == 1 and message.startswith('jaxser: '), output[-3000:]
  for text in texts:
    assert text in message, (text, message)
  checked = output.split('jaxser: ')[-1] if orbax_logged_error else output
  assert 'Traceback' not in checked, output[-3000:]
  return message


def read_metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def tree_digest(folder, skip=('.lock',)) -> dict:
  """Every file's content hash (a workdir left untouched keeps its digest)."""
  out = {}
  for path in sorted(pathlib.Path(folder).rglob('*')):
    if path.is_file() and path.name not in skip:
      out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
  return out


def tmp_checkpoints(workdir) -> list[pathlib.Path]:
  """orbax's unfinished checkpoint folders (`<step>.orbax-checkpoint-tmp*`)."""
  found = []
  for kind in (checkpoint.LATEST, checkpoint.BEST):
    try:
      found += [pathlib.Path(workdir) / kind / e.name
                for e in os.scandir(pathlib.Path(workdir) / kind)
                if checkpoint.TMP_SUFFIX in e.name]
    except FileNotFoundError:
      pass
  return found


@pytest.fixture(scope='module')
def abstract_state():
  """The TrainState shapes of the runs here, to restore their checkpoints."""
  config = tiny.get_config()
  model = config_lib.create_model(config, 4)
  bins = config_lib.feature_params(config).num_bins
  return checkpoint.abstract(jax.eval_shape(
      lambda: train.create_train_state(config, model, bins)))


def restore(workdir, abstract_state, kind=checkpoint.LATEST):
  ckpts = checkpoint.Checkpoints(str(workdir), read_only=True)
  try:
    return ckpts.restore(kind, abstract_state)
  finally:
    ckpts.close()


def latest_steps(workdir) -> tuple[int | None, int | None]:
  """The steps of the latest and the best complete checkpoints."""
  ckpts = checkpoint.Checkpoints(str(workdir), read_only=True)
  try:
    return (ckpts.latest_step(checkpoint.LATEST), ckpts.latest_step(checkpoint.BEST))
  finally:
    ckpts.close()


def all_finite(tree) -> bool:
  leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]
  return all(np.all(np.isfinite(x)) for x in leaves if np.issubdtype(x.dtype, np.inexact))


def assert_states_equal(a, b):
  for part in ('step', 'params', 'opt_state', 'centers', 'rng'):
    jax.tree_util.tree_map(np.testing.assert_array_equal,
                           jax.device_get(getattr(a, part)),
                           jax.device_get(getattr(b, part)))


# --------------------------------------------------------------------------
# The runs.

# Config faults: flags, and the text the message must hold (naming the field).
CONFIG_FAULTS = {
    'unknown_field': (['--config.no_such_field=1'], "unknown config field 'no_such_field'"),
    'misspelt_field': (['--config.batchsize=4'], 'Did you mean "batch_size"'),
    'negative_lambda': (['--config.center_loss_weight=-0.3'],
                        'config.center_loss_weight=-0.3: lambda must be >= 0'),
    'alpha_zero': (['--config.center_alpha=0.0'],
                   'config.center_alpha=0.0: alpha must be in (0, 1]'),
    'batch_zero': (['--config.batch_size=0'], 'config.batch_size=0: must be > 0'),
    'unknown_class': (['--config.classes=neutral,angri'],
                      "config.classes='neutral,angri': label map: 'angri' is not"),
    'empty_class': (['--config.classes=neutral,angry,happy,sad,fearful'],
                    "config.classes='neutral,angry,happy,sad,fearful': corpus "
                    "'manifest' has no usable utterance of class fearful"),
    'no_corpus_root': (['--config.corpus_root=/no/such/corpus.csv'],
                       "config.corpus_root='/no/such/corpus.csv': does not exist"),
    'gru_units_zero': (['--config.model.gru_units=0'], 'config.model.gru_units=0: must be > 0'),
    'embedding_zero': (['--config.model.embedding_dim=0'],
                       'config.model.embedding_dim=0: must be > 0'),
    'negative_seed': (['--config.seed=-1'],
                      'config.seed=-1: must be an integer in [0, 2**32)'),
    'demo_utterances_zero': (['--config.demo_utterances=0'],
                             'config.demo_utterances=0: the demo corpus needs at least 8'),
    'top_db_nan': (['--config.features.top_db=nan'],
                   'config.features.top_db=nan: the dynamic range must be a finite'),
    'top_db_negative': (['--config.features.top_db=-5'],
                        'config.features.top_db=-5.0: the dynamic range must be a finite'),
    'bucket_too_short': (['--config.buckets=20,200'], 'a bucket is shorter than the '
                         '49 frames the model needs for one output step'),
    'missing_config_file': (['--config=jaxser/configs/nosuch.py'],
                            '--config=jaxser/configs/nosuch.py: no config file '
                            'jaxser/configs/nosuch.py'),
    'bad_config_argument': (['--config=jaxser/configs/demo.py:nosuch'],
                            "ValueError: demo.py takes no argument, 'quick' or 'robust', "
                            "got 'nosuch'"),
}


def _make_unwritable(folder: pathlib.Path) -> str | None:
  """Makes an existing folder unwritable, honestly, also for root.

  Root ignores mode bits (chmod 555 does not stop it, and `os.access` says
  yes), so as root the folder is made immutable (`chattr +i`, on ext4 and
  similar), which refuses every write, root's included. Others get chmod.

  Returns:
    The error text a write there gives, or None where this cannot be done.
  """
  if os.geteuid() != 0:
    folder.chmod(0o555)
    return 'Permission denied'
  done = subprocess.run(['chattr', '+i', str(folder)], capture_output=True)
  return 'Operation not permitted' if done.returncode == 0 else None


def _make_writable(folder: pathlib.Path):
  if os.geteuid() != 0:
    folder.chmod(0o755)
  else:
    subprocess.run(['chattr', '-i', str(folder)], check=False)


@pytest.fixture(scope='module')
def refusals(jobs, base, tone_manifest, tmp_path_factory):
  """Runs that must be refused at once, started before the reference run."""
  root = tmp_path_factory.mktemp('refusals')
  for name, (flags, _) in CONFIG_FAULTS.items():
    jobs.start(name, cli(root / name, base, *flags,
                         f'--config.cache_dir={root / f"features_{name}"}'))
  blocker = root / 'a_file'
  blocker.write_text('not a folder')
  unwritable = root / 'unwritable'
  unwritable.mkdir()
  workdirs = {'under_a_file': (blocker / 'run', 'Not a directory'),
              'unwritable': (unwritable, _make_unwritable(unwritable))}
  for name, (workdir, reason) in workdirs.items():
    if reason:
      jobs.start(name, cli(workdir, base, f'--config.cache_dir={root / f"features_{name}"}'))
  wav = pathlib.Path(tone_manifest).parent / 's1_angry_0.wav'
  jobs.start('predict_nowhere', predict_cli(root / 'nowhere', wav))
  yield {'root': root, 'workdirs': workdirs, 'wav': wav}
  _make_writable(unwritable)


@pytest.fixture(scope='module')
def reference(refusals, jobs, base, tmp_path_factory):
  """An uninterrupted run (seed 0): what every resumed run must reproduce.

  The first run of the module: it compiles, the others load its code.
  """
  workdir = tmp_path_factory.mktemp('runs') / 'reference'
  jobs.start('reference', cli(workdir, base), niceness=0)
  status, output = jobs.result('reference')
  assert status == 0, output[-3000:]
  return workdir


# Evaluate from step 2 every 2 steps, so best checkpoints are saved often.
_EVAL_OFTEN = ('--config.eval_start_step=0', '--config.eval_every_steps=2')


@pytest.fixture(scope='module')
def later(reference, jobs, base, tone_manifest, tmp_path_factory):
  """The runs that need the reference's compiled code or its workdir."""
  root = tmp_path_factory.mktemp('later')

  def copy(name):
    shutil.copytree(reference, root / name)
    return root / name

  # 2. Determinism.
  jobs.start('seed0', cli(root / 'seed0', base))
  jobs.start('seed1', cli(root / 'seed1', base, '--config.seed=1'))
  # 3. Non-finite values and 4. a full disk, injected by the drivers.
  for name, fault in (('centers_nan', 'centers:nan:7'), ('params_nan', 'params:nan:8'),
                      ('loss_inf', 'loss:inf:5')):
    jobs.start(name, cli(root / name, base, *_EVAL_OFTEN, driver=NAN_DRIVER),
               FAULT=fault)
  jobs.start('full_disk', cli(root / 'full_disk', base, driver=ENOSPC_DRIVER),
             FAIL_AT_SAVE='2')
  # 1. A finished run, run again.
  digests = {'rerun': tree_digest(copy('rerun') / 'checkpoints')}
  jobs.start('rerun', cli(root / 'rerun', base))
  # 4. A second run on a workdir that a first run holds.
  digests['locked'] = tree_digest(copy('locked'))
  lock = workdir_lib.WorkdirLock(str(root / 'locked'))
  jobs.start('locked', cli(root / 'locked', base))
  # 7. Another model, another class set; damaged checkpoints for predict.
  for name, flag in (('other_model', '--config.model.gru_units=16'),
                     ('other_classes', '--config.classes=neutral,angry,sad')):
    digests[name] = tree_digest(copy(name))
    jobs.start(name, cli(root / name, base, flag))
  incomplete = copy('incomplete')
  best_step = latest_steps(incomplete)[1]
  shutil.rmtree(incomplete / 'best' / str(best_step) / 'state')
  killed_early = copy('killed_early')
  for kind in (checkpoint.LATEST, checkpoint.BEST):  # only unfinished saves left
    for step_dir in (killed_early / kind).iterdir():
      step_dir.rename(step_dir.with_name(f'{step_dir.name}{checkpoint.TMP_SUFFIX}-1'))
  unfinished = len(tmp_checkpoints(killed_early))
  wav = pathlib.Path(tone_manifest).parent / 's1_angry_0.wav'
  jobs.start('predict_incomplete', predict_cli(incomplete, wav))
  jobs.start('predict_killed_early', predict_cli(killed_early, wav))
  yield {'root': root, 'digests': digests, 'lock': lock, 'best_step': best_step,
         'unfinished': unfinished}
  lock.release()


# --------------------------------------------------------------------------
# 1. Kill and resume (started last: it overlaps the runs above).


def _step_of(tmp_folder: pathlib.Path) -> int:
  return int(tmp_folder.name.split('.')[0])


def _kill_during_a_save(argv, env, log, workdir, first_step):
  """Starts a run and SIGKILLs it while it writes a checkpoint >= `first_step`.

  Returns:
    The unfinished checkpoint folders left behind (evidence that the kill
    fell inside a save), or [] if the run ended or the save finished first.
  """
  proc = start(argv, env, log)
  deadline = time.monotonic() + 300
  try:
    while proc.poll() is None and time.monotonic() < deadline:
      if any(_step_of(p) >= first_step for p in tmp_checkpoints(workdir)):
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return tmp_checkpoints(workdir)
      time.sleep(0.002)
    return []
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()


def _kill_at_random(argv, env, log, rng, *, after: str, most: float,
                    before: str) -> str:
  """Starts a run and SIGKILLs it at a random moment; says what happened.

  The moment is uniform in [0, `most`] seconds after `after` appears in the
  run's log, or the moment `before` appears if that comes first (so the
  kill lands before the run ends). A run that ends by itself must succeed.
  """
  proc = start(argv, env, log)
  t0, delay, since = time.monotonic(), rng.uniform(0, most), None
  try:
    while proc.poll() is None and time.monotonic() - t0 < 300:
      text = pathlib.Path(log).read_text()
      if since is None and after in text:
        since = time.monotonic()
      if since is not None and (time.monotonic() - since >= delay or before in text):
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return (f'killed {time.monotonic() - since:.2f} s after {after!r} '
                f'(drawn: {delay:.2f} s)')
      time.sleep(0.005)
    assert proc.returncode == 0, pathlib.Path(log).read_text()[-3000:]
    return 'ended by itself'
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()


def test_killed_runs_resume_to_the_uninterrupted_result(reference, later, base, env,
                                                        logs, tmp_path, abstract_state):
  del later  # started first, so that its runs overlap this test's
  workdir = tmp_path / 'killed'
  argv = cli(workdir, base)
  seed = random.randrange(1 << 30)
  rng = random.Random(seed)
  story = [f'random seed {seed}']  # shown on failure, to replay the timings

  def latest():
    return latest_steps(workdir)[0] if (workdir / 'checkpoints').exists() else None

  # A: a kill at a random moment once the data is ready (model set-up,
  # loading compiled code, training, a save).
  story.append('A ' + _kill_at_random(argv, env, logs / 'kill_a.log', rng,
                                      after='fold random:', most=10.0,
                                      before='checkpoint at step 8'))
  story.append(f'latest {latest()}, unfinished {tmp_checkpoints(workdir)}')

  # B: a kill in the middle of writing a checkpoint: orbax's temporary folder
  # is there, the checkpoint is not finished.
  old = [_step_of(p) for p in tmp_checkpoints(workdir)] + [latest() or 0]
  first_step = max(rng.choice([4, 6, 8]), max(old) + 2)
  leftovers = []
  for attempt in range(3):
    leftovers = _kill_during_a_save(argv, env, logs / f'kill_b{attempt}.log',
                                    workdir, first_step)
    story.append(f'B kill in a save from step {first_step}: left {leftovers}')
    if leftovers:
      break
    first_step = (latest() or 0) + 2
  assert leftovers, '; '.join(story)
  complete = latest()
  story.append(f'latest {complete}')
  assert complete is None or complete < max(_step_of(p) for p in leftovers), story

  # C: a kill at a random moment of the resumed run's training, which must
  # resume from the last complete checkpoint, never the unfinished one.
  resumed = 'resumed from step' if complete else 'fold random:'
  story.append('C ' + _kill_at_random(argv, env, logs / 'kill_c.log', rng,
                                      after=resumed, most=6.0,
                                      before=f'checkpoint at step {STEPS}'))
  if complete:
    assert f'resumed from step {complete} ' in (logs / 'kill_c.log').read_text(), story
  complete = latest()
  story.append(f'latest {complete}, unfinished {tmp_checkpoints(workdir)}')

  # D: the same command once more runs to the end.
  status, output = run(argv, env, logs / 'resume.log')
  assert status == 0, output[-3000:]
  if complete:
    assert f'resumed from step {complete} ' in output, '; '.join(story)
  assert not tmp_checkpoints(workdir), 'unfinished checkpoint folders were left'

  ref = reference
  assert read_metrics(workdir) == read_metrics(ref), '; '.join(story)
  for kind in (checkpoint.LATEST, checkpoint.BEST):
    (got, got_meta), (want, want_meta) = (restore(w, abstract_state, kind)
                                          for w in (workdir, ref))
    assert int(got.step) == int(want.step), (kind, story)
    assert_states_equal(got, want)
    assert got_meta.best == want_meta.best
  assert results_of(workdir) == results_of(ref)
  print('; '.join(story))


def test_rerunning_a_finished_run_changes_nothing(reference, later, jobs):
  # The degenerate kill: after the last checkpoint, e.g. in the final report.
  status, output = jobs.result('rerun')
  assert status == 0, output[-3000:]
  workdir = later['root'] / 'rerun'
  assert f'resumed from step {STEPS} ' in output
  assert read_metrics(workdir) == read_metrics(reference)
  assert [r['split'] for r in read_metrics(workdir)].count('test') == 1
  assert tree_digest(workdir / 'checkpoints') == later['digests']['rerun']


def test_metrics_of_a_killed_run_are_cut_back_to_its_checkpoint(tmp_path):
  lines = [{'step': 4, 'split': 'train', 'loss': 1.0},
           {'step': 8, 'split': 'train', 'loss': 0.5},
           {'step': 8, 'split': 'dev', 'ua': 0.5},
           {'step': 8, 'split': 'test', 'ua': 0.4},  # a final report cut short
           {'step': 12, 'split': 'train', 'loss': 0.4}]
  text = ''.join(json.dumps(l) + '\n' for l in lines) + '{"step": 12, "spl'  # torn
  (tmp_path / 'metrics.jsonl').write_text(text)
  workdir_lib.MetricsWriter(str(tmp_path), resume_step=8).close()
  assert read_metrics(tmp_path) == lines[:3]


def test_a_failed_write_in_the_tensorboard_thread_is_raised_not_printed(
    tmp_path, monkeypatch, capfd):
  from tensorboardX import record_writer  # pylint: disable=g-import-not-at-top
  write = record_writer.RecordWriter.write

  def full_disk_but_in_the_main_thread(self, data):
    if threading.current_thread() is threading.main_thread():
      return write(self, data)  # the event file's header, written at creation
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  monkeypatch.setattr(record_writer.RecordWriter, 'write', full_disk_but_in_the_main_thread)
  metrics = workdir_lib.MetricsWriter(str(tmp_path), resume_step=0)
  metrics.write(1, 'train', {'loss': 1.0})
  with pytest.raises(OSError) as raised:
    # The thread fails on its first event; fewer events than its queue holds
    # (10), since a dead thread's full queue blocks the next one.
    for step in range(2, 9):
      time.sleep(0.05)
      metrics.write(step, 'train', {'loss': 1.0})
    metrics.close()
  assert raised.value.errno == errno.ENOSPC
  assert raised.value.filename == str(tmp_path / 'tensorboard')
  metrics.close()  # the rest closes; nothing is raised twice
  assert 'Traceback' not in capfd.readouterr().err


# --------------------------------------------------------------------------
# 2. Determinism.


def test_same_seed_same_metrics_other_seed_different(reference, later, jobs):
  for name in ('seed0', 'seed1'):
    status, output = jobs.result(name)
    assert status == 0, output[-3000:]
  want = read_metrics(reference)
  assert read_metrics(later['root'] / 'seed0') == want
  other = read_metrics(later['root'] / 'seed1')
  assert len(other) == len(want)
  train_lines = [(a, b) for a, b in zip(other, want) if a['split'] == 'train']
  assert train_lines and all(a['loss'] != b['loss'] for a, b in train_lines)


# --------------------------------------------------------------------------
# 3. Non-finite values.


@pytest.mark.parametrize('name, step, what, kept', [
    ('centers_nan', 7, 'the class centres became non-finite (center_max_abs = nan)', 6),
    ('loss_inf', 5, 'the joint loss became non-finite (loss = inf)', 4),
    ('params_nan', 8, "non-finite values in the training state (['params']", 6),
])
def test_non_finite_values_stop_training(later, jobs, abstract_state, name, step,
                                         what, kept):
  workdir = later['root'] / name
  assert_refused(*jobs.result(name), f'jaxser: step {step}: {what}',
                 f'the last good checkpoint (step {kept}) is kept')
  latest, best = latest_steps(workdir)
  assert latest == kept and best is not None and best <= kept
  for kind in (checkpoint.LATEST, checkpoint.BEST):
    state, _ = restore(workdir, abstract_state, kind)
    assert all_finite((state.params, state.opt_state, state.centers)), kind
  for record in read_metrics(workdir):  # no NaN line either
    assert all(np.isfinite(v) for v in record.values() if isinstance(v, float))
  assert not tmp_checkpoints(workdir)


# --------------------------------------------------------------------------
# 4. Workdir faults: a full disk, unwritable workdirs, two runs on one.


def test_full_disk_fails_at_the_save_with_the_previous_checkpoint_intact(
    later, jobs, abstract_state):
  workdir = later['root'] / 'full_disk'
  # The second save is the checkpoint of step 4 (one every 2 steps).
  message = assert_refused(*jobs.result('full_disk'),
                           f'jaxser: {workdir}/checkpoints: saving step 4 failed',
                           'No space left on device')
  assert message.endswith('the checkpoint of step 2 there is intact'), message
  assert latest_steps(workdir) == (2, None)
  state, meta = restore(workdir, abstract_state)
  assert int(state.step) == 2 == meta.step and all_finite(state.params)


@pytest.mark.parametrize('name', ['under_a_file', 'unwritable'])
def test_unwritable_workdirs_fail_before_any_work(refusals, jobs, name):
  workdir, reason = refusals['workdirs'][name]
  if reason is None:
    pytest.skip('running as root where chattr +i fails: no honest way here to '
                'make a folder unwritable')
  status, output = jobs.result(name)
  if name == 'unwritable':
    _make_writable(workdir)  # its run is over
  assert_refused(status, output, f'jaxser: {workdir}: cannot create or write the '
                 'workdir', reason)
  assert 'corpus manifest at' not in output  # the corpus was not read
  assert not (refusals['root'] / f'features_{name}').exists()
  if name == 'unwritable':
    assert not any(workdir.iterdir())


def test_a_second_run_on_a_locked_workdir_is_refused(later, jobs):
  workdir = later['root'] / 'locked'
  assert_refused(*jobs.result('locked'),
                 f'jaxser: {workdir}: another jaxser run (pid {os.getpid()}) is using '
                 'this workdir')
  assert tree_digest(workdir) == later['digests']['locked']  # untouched
  later['lock'].release()  # the first run ends: a next run may take the lock
  workdir_lib.WorkdirLock(str(workdir)).release()


# --------------------------------------------------------------------------
# 5. Config faults: refused before any work, naming the field.


@pytest.mark.parametrize('name', sorted(CONFIG_FAULTS))
def test_config_faults_are_refused_before_any_work(refusals, jobs, name):
  status, output = jobs.result(name)
  assert_refused(status, output, CONFIG_FAULTS[name][1])
  workdir = refusals['root'] / name
  features = refusals['root'] / f'features_{name}'
  if name == 'empty_class':  # the one fault that needs the corpus' labels
    assert not (workdir / 'checkpoints').exists()
    assert not (workdir / 'metrics.jsonl').exists()
    assert not any(features.iterdir())  # no feature extracted
  else:  # refused before the workdir was made
    assert not workdir.exists() and not features.exists()


# --------------------------------------------------------------------------
# 7. Foreign or damaged checkpoints.


@pytest.mark.parametrize('name, differs', [
    ('other_model', 'model.gru_units: 8 -> 16'),
    ('other_classes', "classes: paper4 -> neutral,angry,sad; the corpus' utterances "
                      'or audio changed'),
])
def test_checkpoints_of_another_model_or_class_set_are_refused(later, jobs, name,
                                                               differs):
  workdir = later['root'] / name
  assert_refused(*jobs.result(name),
                 f'jaxser: {workdir}: its checkpoint belongs to another run ({differs})',
                 'use another --workdir, or --start_over')
  assert tree_digest(workdir) == later['digests'][name]  # nothing rewritten


def test_restore_refuses_arrays_of_the_wrong_shape(reference, abstract_state):
  # Below the config check: the arrays themselves are never loaded into
  # other shapes (here 3 class centres where the checkpoint holds 4).
  other = abstract_state.replace(centers=abstract_state.centers._replace(
      centers=jax.ShapeDtypeStruct((3, 6), np.float32)))
  with pytest.raises(checkpoint.CheckpointError,
                     match=r'centers/centers: saved \(4, 6\), this model \(3, 6\)'):
    restore(reference, other)


def test_predict_on_missing_or_incomplete_checkpoints(refusals, later, jobs):
  expected = {
      'predict_nowhere': 'no checkpoints/ or best/ folder: not a trained workdir',
      'predict_incomplete': f'best/{later["best_step"]}: incomplete checkpoint '
                            '(no state folder)',
      'predict_killed_early': 'no complete checkpoint',
  }
  for name, text in expected.items():
    assert_refused(*jobs.result(name), text)
  assert not (refusals['root'] / 'nowhere').exists()  # predict creates nothing
  # nor deletes the unfinished save of a training run that may be running.
  assert len(tmp_checkpoints(later['root'] / 'killed_early')) == later['unfinished'] > 0


# --------------------------------------------------------------------------
# 8. A run's identity: a resume, a rerun or a reused crossval run of another
# config or corpus is refused, naming what differs; --start_over trains anew.

# Runs the real CLI after wrapping the final report so that the workdir's
# file system is full when it starts (the workdir is on a small tmpfs).
FILL_BEFORE_REPORT_DRIVER = '''
import os
from jaxser import cli, main, train
report = train.final_report

def fill(folder):
  with open(os.path.join(folder, 'filler'), 'wb', buffering=0) as f:
    for size in (1 << 16, 1 << 12, 1):
      try:
        while True:
          f.write(bytes(size))
      except OSError:
        pass

def full_report(run, *args, **kwargs):
  fill(os.path.dirname(run.workdir))
  return report(run, *args, **kwargs)

train.final_report = full_report
cli.run(main.main, main.define_flags)
'''


def crossval_cli(workdir, base, *flags):
  return [sys.executable, '-m', 'jaxser.crossval', *base, f'--workdir={workdir}',
          '--seeds=0', '--folds=0', *flags]


def _copy_corpus(manifest, folder: pathlib.Path, *, edit: str | None = None) -> str:
  """A copy of the tone corpus; `edit`: a file whose samples change, with
  its size and modification time kept (only its content differs)."""
  shutil.copytree(pathlib.Path(manifest).parent, folder)
  if edit:
    path = folder / edit
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[-400:] = bytes(400)  # silence the last 200 samples
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
  return str(folder / 'manifest.csv')


@pytest.fixture(scope='module')
def small_disks(tmp_path_factory):
  """`mount(name)`: a fresh 3 MiB tmpfs folder; None where mounting is refused."""
  root = tmp_path_factory.mktemp('small_disks')
  mounted = []

  def mount(name):
    folder = root / name
    folder.mkdir()
    done = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=3m', 'tmpfs',
                           str(folder)], capture_output=True)
    if done.returncode != 0:
      return None
    mounted.append(folder)
    return folder

  yield mount
  for folder in mounted:
    subprocess.run(['umount', '-l', str(folder)], check=False)


def _fill_leaving(folder: pathlib.Path, free_kib: int) -> None:
  total = shutil.disk_usage(folder).free // 1024
  with open(folder / 'filler', 'wb') as f:
    f.write(bytes((total - free_kib) * 1024))


@pytest.fixture(scope='module')
def identity_runs(reference, later, jobs, base, tone_manifest, small_disks,
                  tmp_path_factory):
  """Runs over copies of the reference workdir with another config or corpus."""
  del later  # started after its runs
  root = tmp_path_factory.mktemp('identity')
  digests = {}

  def copy(name):
    shutil.copytree(reference, root / name)
    digests[name] = tree_digest(root / name)
    return root / name

  jobs.start('changed_run', cli(copy('changed_run'), base, '--config.split_seed=7',
                                '--config.seed=3', '--config.learning_rate=0.01',
                                '--config.num_train_steps=200'))
  jobs.start('shorter_run', cli(copy('shorter_run'), base, '--config.num_train_steps=8'))
  edited = _copy_corpus(tone_manifest, root / 'tones_edited', edit='s2_happy_1.wav')
  moved = _copy_corpus(tone_manifest, root / 'tones_moved')
  jobs.start('edited_corpus', cli(copy('edited_corpus'), base,
                                  f'--config.corpus_root={edited}'))
  jobs.start('moved_corpus', cli(copy('moved_corpus'), base,
                                 f'--config.corpus_root={moved}'))
  jobs.start('start_over', cli(copy('start_over'), base, '--config.seed=1',
                               '--start_over'))
  # crossval over a finished run: reused when it is the same run, refused not.
  for name, flags in (('crossval_same', ()),
                      ('crossval_other', ('--config.center_loss_weight=0',
                                          '--config.features.kind=stft',
                                          '--config.model.gru_units=32'))):
    shutil.copytree(reference, root / name / 'seed0' / 'fold0')
    digests[name] = tree_digest(root / name)
    jobs.start(name, crossval_cli(root / name, base, *flags))
  jobs.start('crossval_bad_seed', crossval_cli(root / 'crossval_bad_seed', base,
                                               '--seeds=0,x'))
  # Damaged latest checkpoints: a stray step folder, flipped bits.
  stray = copy('stray_step')
  (stray / checkpoint.LATEST / '999').mkdir()
  flipped = copy('flipped_bits')
  for path in (flipped / checkpoint.LATEST / str(STEPS) / 'state' / 'd').iterdir():
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
  jobs.start('stray_step', cli(stray, base))
  jobs.start('flipped_bits', cli(flipped, base))
  # predict on a run whose best/ checkpoint is gone.
  no_best = copy('no_best')
  shutil.rmtree(no_best / checkpoint.BEST)
  wav = pathlib.Path(tone_manifest).parent / 's1_angry_0.wav'
  jobs.start('predict_no_best', predict_cli(no_best, wav))
  # A planted .lock symlink is refused, its target untouched.
  victim = root / 'victim.txt'
  victim.write_text('precious')
  (root / 'planted').mkdir()
  (root / 'planted' / '.lock').symlink_to(victim)
  jobs.start('planted_lock', cli(root / 'planted', base))
  # A full disk: in a save (the first runs out on a 3 MiB tmpfs left with
  # 250 KiB), and in the final report (filled just before it).
  disks = {name: small_disks(name) for name in ('save_disk', 'report_disk')}
  if disks['save_disk']:
    _fill_leaving(disks['save_disk'], 250)
    jobs.start('full_disk_save', cli(disks['save_disk'] / 'run', base))
  if disks['report_disk']:
    jobs.start('full_disk_report', cli(disks['report_disk'] / 'run', base,
                                       driver=FILL_BEFORE_REPORT_DRIVER))
  return {'root': root, 'digests': digests, 'victim': victim, 'disks': disks}


def test_resuming_with_another_split_seed_or_schedule_is_refused(identity_runs, jobs):
  workdir = identity_runs['root'] / 'changed_run'
  assert_refused(*jobs.result('changed_run'),
                 f'jaxser: {workdir}: its checkpoint belongs to another run ('
                 'learning_rate: 0.0003 -> 0.01; num_train_steps: 12 -> 200; '
                 'seed: 0 -> 3; split_seed: 0 -> 7); use another --workdir, or '
                 '--start_over to discard it and train anew')
  assert tree_digest(workdir) == identity_runs['digests']['changed_run']


def test_rerunning_a_finished_run_with_fewer_steps_is_refused(identity_runs, jobs):
  workdir = identity_runs['root'] / 'shorter_run'
  assert_refused(*jobs.result('shorter_run'), 'num_train_steps: 12 -> 8')
  assert tree_digest(workdir) == identity_runs['digests']['shorter_run']
  assert [r['split'] for r in read_metrics(workdir)].count('test') == 1


def test_an_edited_corpus_is_refused_a_moved_one_resumes(identity_runs, reference, jobs):
  workdir = identity_runs['root'] / 'edited_corpus'
  assert_refused(*jobs.result('edited_corpus'), "belongs to another run (the corpus' "
                 'utterances or audio changed)')
  assert tree_digest(workdir) == identity_runs['digests']['edited_corpus']
  status, output = jobs.result('moved_corpus')
  assert status == 0, output[-3000:]
  assert f'resumed from step {STEPS} ' in output
  moved = identity_runs['root'] / 'moved_corpus'
  assert read_metrics(moved) == read_metrics(reference)


def test_start_over_discards_the_earlier_run_and_trains_anew(identity_runs, later, jobs):
  status, output = jobs.result('start_over')
  assert status == 0, output[-3000:]
  assert 'resumed from' not in output and 'discarded the earlier run' in output
  workdir = identity_runs['root'] / 'start_over'
  assert jobs.result('seed1')[0] == 0
  assert read_metrics(workdir) == read_metrics(later['root'] / 'seed1')
  assert json.loads((workdir / 'results.json').read_text())['identity']['seed'] == 1


def test_crossval_reuses_a_finished_run_only_of_the_same_identity(identity_runs,
                                                                   reference, jobs):
  status, output = jobs.result('crossval_same')
  assert status == 0, output[-3000:]
  assert 'seed 0 fold 0: finished before, not redone' in output
  summary = json.loads((identity_runs['root'] / 'crossval_same' / 'summary.json').read_text())
  results = json.loads((reference / 'results.json').read_text())
  assert summary['folds'][0]['ua'] == results['ua']
  root = identity_runs['root'] / 'crossval_other'
  assert_refused(*jobs.result('crossval_other'),
                 f'jaxser: {root}/seed0/fold0/results.json belongs to another run (',
                 'center_loss_weight: 0.3 -> 0.0', 'features.kind: mel -> stft',
                 'model.gru_units: 8 -> 32')
  assert not (root / 'summary.json').exists() and not (root / 'summary.md').exists()
  assert tree_digest(root) == identity_runs['digests']['crossval_other']


def test_crossval_refuses_a_seed_that_is_not_a_number(identity_runs, jobs):
  assert_refused(*jobs.result('crossval_bad_seed'),
                 "jaxser: --seeds: 'x' is not a whole number >= 0")
  assert not (identity_runs['root'] / 'crossval_bad_seed' / 'seed0').exists()


# --------------------------------------------------------------------------
# 9. Damaged latest checkpoints fall back to the one before; predict warns
# when there is no best checkpoint; locks and full disks.


@pytest.mark.parametrize('name, resumed, cause', [
    ('stray_step', STEPS, f'{checkpoint.LATEST}/999: incomplete checkpoint (no meta folder)'),
    ('flipped_bits', STEPS - 2, f'{checkpoint.LATEST}/{STEPS}: unreadable checkpoint '
                                'metadata (DATA_LOSS'),
])
def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(
    identity_runs, reference, jobs, name, resumed, cause):
  status, output = jobs.result(name)
  assert status == 0, output[-3000:]
  assert cause in output and f'resumed from step {resumed} ' in output
  workdir = identity_runs['root'] / name
  damaged = list((workdir / checkpoint.DAMAGED).iterdir())
  assert len(damaged) == 1  # moved aside, not deleted
  assert read_metrics(workdir) == read_metrics(reference)
  assert results_of(workdir) == results_of(reference)


def test_a_reader_passes_over_a_step_rotated_away_while_it_reads(reference, tmp_path,
                                                                 abstract_state):
  workdir = tmp_path / 'rotating'
  shutil.copytree(reference, workdir)
  ckpts = checkpoint.Checkpoints(str(workdir), read_only=True)
  try:
    assert ckpts.latest_step() == STEPS
    # A training run's rotation deletes the newest listed step meanwhile.
    shutil.rmtree(workdir / checkpoint.LATEST / str(STEPS))
    state, meta = ckpts.restore_newest(checkpoint.LATEST, abstract_state)
  finally:
    ckpts.close()
  assert int(state.step) == meta.step == STEPS - 2


def test_predict_warns_when_there_is_no_best_checkpoint(identity_runs, jobs):
  status, output = jobs.result('predict_no_best')
  assert status == 0, output[-3000:]
  assert (f'no best/ checkpoint (no dev evaluation ran yet): using the latest '
          f'checkpoint, step {STEPS} of {STEPS}') in output
  assert '"emotion"' in output


def test_a_planted_lock_symlink_is_refused_and_its_target_kept(identity_runs, jobs):
  workdir = identity_runs['root'] / 'planted'
  assert_refused(*jobs.result('planted_lock'), f'jaxser: {workdir}/.lock: cannot '
                 'write the lock file', 'remove it if it is a link')
  assert identity_runs['victim'].read_text() == 'precious'


def test_deleting_the_lock_file_does_not_let_a_second_run_in(tmp_path):
  lock = workdir_lib.WorkdirLock(str(tmp_path))
  try:
    os.remove(tmp_path / '.lock')
    with pytest.raises(JaxserError, match='another jaxser run'):
      workdir_lib.WorkdirLock(str(tmp_path))
  finally:
    lock.release()
  workdir_lib.WorkdirLock(str(tmp_path)).release()  # free again


def _require_disk(identity_runs, name):
  if identity_runs['disks'][name] is None:
    pytest.skip('mounting a small tmpfs needs root: no honest full disk here')
  return identity_runs['disks'][name]


def test_a_real_full_disk_in_a_save_ends_in_one_line(identity_runs, jobs,
                                                     abstract_state):
  disk = _require_disk(identity_runs, 'save_disk')
  message = assert_refused(*jobs.result('full_disk_save'), 'No space left on device')
  # The save runs beside the loop, so the disk may fill in the save or in a
  # write of metrics.jsonl or of the TensorBoard events made meanwhile.
  in_save = re.fullmatch(r'jaxser: (\S+): saving step (\d+) failed \(No space left on '
                         r'device\); (?:the checkpoint of step (\d+) there is intact|no '
                         r'earlier checkpoint was saved there)(?:; .*)?', message)
  in_write = re.fullmatch(rf'jaxser: {disk}/run/(?:metrics\.jsonl|tensorboard): No space '
                          r'left on device; (?:the last good checkpoint \(step (\d+)\) is '
                          rf'kept in ({disk}/run/{checkpoint.LATEST})|no checkpoint was '
                          r'saved before)', message)
  assert in_save or in_write, message
  assert len(message) < 300
  folder, step = (in_save[1], in_save[3]) if in_save else (in_write[2], in_write[1])
  if step:
    state, _ = restore(disk / 'run', abstract_state, folder.rsplit('/', 1)[-1])
    assert int(state.step) == int(step) and all_finite(state.params)


def test_a_full_disk_in_the_final_report_ends_in_one_line_and_resumes(
    identity_runs, reference, jobs, base, env, logs):
  disk = _require_disk(identity_runs, 'report_disk')
  workdir = disk / 'run'
  message = assert_refused(*jobs.result('full_disk_report'), 'No space left on device')
  assert len(message) < 300, message
  assert 'intact' in message or 'is kept' in message, message
  assert not (workdir / 'results.json').exists()
  assert not [p for p in workdir.iterdir() if p.name.endswith('.tmp')]
  (disk / 'filler').unlink()  # space again: the same command finishes the run
  status, output = run(cli(workdir, base), env, logs / 'report_again.log')
  assert status == 0, output[-3000:]
  assert read_metrics(workdir) == read_metrics(reference)
  assert results_of(workdir) == results_of(reference)


def test_sigint_ends_in_one_line_and_the_run_resumes(reference, later, base, env,
                                                     logs, tmp_path):
  del later  # started first, so that its runs overlap this test's
  workdir = tmp_path / 'interrupted'
  log = logs / 'sigint.log'
  proc = start(cli(workdir, base), env, log)
  try:
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
      if 'saved the latest checkpoint at step 2' in log.read_text():
        os.kill(proc.pid, signal.SIGINT)
        break
      time.sleep(0.005)
    proc.wait(timeout=120)
  finally:
    if proc.poll() is None:
      proc.kill()
  output = log.read_text()
  if proc.returncode == 0:
    pytest.fail('the run ended before the SIGINT arrived: ' + output[-500:])
  assert_refused(proc.returncode, output, 'jaxser: interrupted; the last good '
                 'checkpoint (step', 'rerun the same command to resume')
  status, output = run(cli(workdir, base), env, logs / 'sigint_resume.log')
  assert status == 0, output[-3000:]
  assert read_metrics(workdir) == read_metrics(reference)
