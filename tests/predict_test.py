"""The predict command: no wrong or unexplained result, bounded memory.

The command-line faults run the real CLI (`python -m jaxser.predict`) in a
subprocess against one tiny workdir trained once for this module (the tiny
config on the tone corpus, one padded length). The subprocesses share a JAX
persistent compilation cache and use batches of 1 or 2, so each program is
compiled once for the module.
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import soundfile as sf
import soxr

import jaxser
from jaxser import Classifier
from jaxser.errors import AudioError
from jaxser.data.records import PAPER_4CLASS
from jaxser.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parent.parent
CLASSES = PAPER_4CLASS.classes
EMBEDDING_DIM = 6  # jaxser/configs/tiny.py

# Runs the real CLI with the model's logits made NaN (finite features in, a
# non-finite output out): what no prediction line may ever show.
NAN_OUTPUTS_DRIVER = '''
from jaxser import cli, evaluate, predict
make_eval_step = evaluate.make_eval_step

def nan_eval_step(mesh=None):
  step = make_eval_step(mesh)
  def nan_logits(state, batch):
    out = step(state, batch)
    return dict(out, logits=out['logits'] * float('nan'))
  return nan_logits

evaluate.make_eval_step = nan_eval_step
cli.run(predict.main, predict.define_flags)
'''


@pytest.fixture(scope='module')
def workdir(tone_manifest, env, tmp_path_factory):
  """A tiny trained workdir shared by the tests, with a best/ checkpoint.

  4 steps, with a dev evaluation at the last one.
  """
  root = tmp_path_factory.mktemp('predict')
  out = subprocess.run(
      [sys.executable, '-m', 'jaxser.main', '--config=jaxser/configs/tiny.py',
       f'--workdir={root / "run"}', '--config.corpus=manifest',
       f'--config.corpus_root={tone_manifest}', f'--config.cache_dir={root / "cache"}',
       '--config.plots=False', '--config.features.max_frames=200',
       '--config.buckets=200,', '--config.num_train_steps=4',
       '--config.eval_start_step=2'],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return root / 'run'


@pytest.fixture(scope='module')
def tones(tone_manifest):
  """Six readable files of the tone corpus, of different lengths."""
  return sorted(pathlib.Path(tone_manifest).parent.glob('*.wav'))[:6]


def run_predict(env, *args, driver=None) -> subprocess.CompletedProcess:
  head = [sys.executable, '-c', driver] if driver else [sys.executable, '-m', 'jaxser.predict']
  return subprocess.run([*head, *map(str, args)], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)


def strict_lines(stdout: str) -> list[dict]:
  """The output lines as JSON that holds no NaN or Infinity."""
  def refuse(constant):
    raise ValueError(f'not strict JSON: {constant}')
  return [json.loads(line, parse_constant=refuse) for line in stdout.splitlines()]


def assert_refused(out: subprocess.CompletedProcess, message: str) -> None:
  """Exit status 1, nothing predicted, one `jaxser:` line last, no traceback."""
  assert out.returncode == 1, (out.returncode, out.stdout, out.stderr[-3000:])
  assert out.stdout == ''
  assert out.stderr.strip().splitlines()[-1] == f'jaxser: {message}', out.stderr[-3000:]
  assert 'Traceback' not in out.stderr


# Runs argv[1:] as a child of a fresh, small process and writes the child's
# peak RSS (KiB) to $PEAK_RSS_FILE. Linux carries a process's peak across
# fork and exec, so a child forked from this (large) pytest process would
# report pytest's own size.
MEASURE = ('import os, sys; pid = os.fork() or os.execvp(sys.argv[1], sys.argv[1:]); '
           '_, status, usage = os.wait4(pid, 0); '
           "open(os.environ['PEAK_RSS_FILE'], 'w').write(str(usage.ru_maxrss)); "
           'sys.exit(os.waitstatus_to_exitcode(status))')


def run_measured(env, *args) -> tuple[subprocess.CompletedProcess, float]:
  """Runs the CLI: its result and its own peak resident set in MB."""
  with tempfile.NamedTemporaryFile() as peak:
    result = subprocess.run(
        [sys.executable, '-c', MEASURE, sys.executable, '-m', 'jaxser.predict',
         *map(str, args)], cwd=ROOT, env=dict(env, PEAK_RSS_FILE=peak.name),
        capture_output=True, text=True)
    return result, int(pathlib.Path(peak.name).read_text()) / 1024  # KiB


def write_loud_noise(path, seed=0) -> float:
  """One second of finite float32 noise whose power overflows float32: its peak."""
  noise = (np.random.default_rng(seed).standard_normal(16000) * 1e20).astype(np.float32)
  sf.write(path, noise, 16000, subtype='FLOAT')
  return float(np.max(np.abs(noise)))


# --------------------------------------------------------------------------
# 1. Arguments are checked before the model is restored or audio is read:
# the workdir here does not exist, so a later check would name it instead.


@pytest.mark.parametrize('flag, message', [
    ('--batch_size=-1', '--batch_size=-1: must be at least 1'),
    ('--batch_size=0', '--batch_size=0: must be at least 1'),
    ('--batch_size=two', "flag --batch_size=two: invalid literal for int() with "
                         "base 10: 'two'"),
    ('--embeddings={tmp}', '--embeddings={tmp}: is a folder; give a file name'),
    ('--embeddings={tmp}/none/z.npy',
     '--embeddings={tmp}/none/z.npy: the folder {tmp}/none does not exist'),
    ('--embeddings={tmp}/a.wav/z.npy',
     '--embeddings={tmp}/a.wav/z.npy: {tmp}/a.wav is not a folder'),
])
def test_bad_arguments_end_in_one_line_before_anything_runs(env, tmp_path, flag, message):
  wav = tmp_path / 'a.wav'
  sf.write(wav, np.zeros(16000, np.float32), 16000)
  out = run_predict(env, f'--workdir={tmp_path / "no_workdir"}',
                    flag.format(tmp=tmp_path), wav)
  assert_refused(out, message.format(tmp=tmp_path))
  assert not (tmp_path / 'no_workdir').exists()


@pytest.mark.parametrize('args, message', [
    ((), '--workdir is required'),
    (('--workdir=w',), 'give audio files or folders to predict'),
])
def test_missing_arguments_end_in_one_line(env, tmp_path, args, message):
  out = run_predict(env, *args, *(['x.wav'] if not args else []))
  assert_refused(out, message)


# --------------------------------------------------------------------------
# 2. Only finite results are printed; the others are error lines.


def test_audio_whose_power_overflows_is_an_error_line(workdir, tones, env, tmp_path):
  loud = tmp_path / 'loud.wav'
  peak = write_loud_noise(loud)
  broken = tmp_path / 'broken.wav'
  broken.write_bytes(b'not audio')
  z_path = tmp_path / 'z'  # no suffix: written as given
  out = run_predict(env, f'--workdir={workdir}', '--batch_size=2',
                    f'--embeddings={z_path}', tones[0], loud, broken)
  # Some files failed: exit status 1, after every line and the embeddings.
  assert out.returncode == 1, out.stderr[-3000:]
  lines = {line['file']: line for line in strict_lines(out.stdout)}
  assert lines[str(loud)] == {
      'file': str(loud),
      'error': f"{loud}: non-finite features: the audio's power overflows float32 "
               f'(peak amplitude {peak:.3g}; audio is expected within [-1, 1])'}
  assert 'unreadable audio' in lines[str(broken)]['error']
  good = lines[str(tones[0])]
  assert good['index'] == 0 and good['emotion'] in CLASSES
  assert abs(sum(good['probabilities'].values()) - 1) < 1e-4
  assert np.load(z_path).shape == (1, EMBEDDING_DIM)
  assert out.stderr.strip().splitlines()[-1] == (
      'jaxser: 2 of 3 files could not be predicted (--allow_failures: exit 0 all '
      'the same)')
  # --allow_failures: the same lines, exit status 0.
  allowed = run_predict(env, f'--workdir={workdir}', '--batch_size=2',
                        '--allow_failures', tones[0], loud, broken)
  assert allowed.returncode == 0, allowed.stderr[-3000:]
  assert strict_lines(allowed.stdout) == strict_lines(out.stdout)
  assert allowed.stderr.strip().splitlines()[-1] == (
      'jaxser: 2 of 3 files could not be predicted')


def test_non_finite_model_outputs_are_error_lines(workdir, tones, env):
  out = run_predict(env, f'--workdir={workdir}', '--batch_size=2', *tones[:2],
                    driver=NAN_OUTPUTS_DRIVER)
  assert strict_lines(out.stdout) == [
      {'file': str(f), 'error': f"{f}: the model's outputs are non-finite (NaN or Inf)"}
      for f in tones[:2]]
  assert out.returncode == 1 and 'Traceback' not in out.stderr, out.stderr[-3000:]
  assert out.stderr.strip().splitlines()[-1] == 'jaxser: no file could be predicted (of 2)'


# --------------------------------------------------------------------------
# 3. Memory: files are read a group at a time, each cut to its features'
# samples at once.


def test_memory_does_not_grow_with_the_number_or_length_of_files(workdir, env, tmp_path):
  # 16 files of 30 minutes at 16 kHz (115 MB each as float32). Before, one
  # cost 4.5 GB; with every file's audio held, 16 would cost several more.
  first = tmp_path / 'long_0.wav'
  rng = np.random.default_rng(0)
  sf.write(first, (0.1 * rng.standard_normal(30 * 60 * 16000)).astype(np.float32),
           16000, subtype='PCM_16')
  files = [first]
  for i in range(1, 16):
    files.append(tmp_path / f'long_{i}.wav')
    os.link(first, files[-1])
  out, peak_mb = run_measured(env, f'--workdir={workdir}', '--batch_size=2', *files)
  assert out.returncode == 0, out.stderr[-3000:]
  assert peak_mb < 1500, f'peak RSS {peak_mb:.0f} MB'
  lines = strict_lines(out.stdout)
  assert [line['file'] for line in lines] == list(map(str, files))
  assert [line['index'] for line in lines] == list(range(16))
  assert all(line['probabilities'] == lines[0]['probabilities'] for line in lines)


def test_a_file_at_1_hz_is_refused_before_it_is_resampled(workdir, env, tmp_path):
  # 2000 samples at 1 Hz: a 4 KB file that would be 33 minutes at 16 kHz
  # (a 4 MB one, 64 GB): refused from its header, before any is read.
  path = tmp_path / 'one_hz.wav'
  sf.write(path, (0.1 * np.random.default_rng(0).standard_normal(2000)).astype(np.float32),
           1, subtype='FLOAT')
  out, peak_mb = run_measured(env, f'--workdir={workdir}', path)
  assert out.returncode == 1, out.stderr[-3000:]
  assert strict_lines(out.stdout) == [{
      'file': str(path), 'error': f'{path}: unreadable audio (sample rate 1 Hz, below '
                                  'the 4000 Hz of any speech recording)'}]
  assert peak_mb < 1500, f'peak RSS {peak_mb:.0f} MB'


def test_groups_keep_the_output_order_and_the_embeddings_rows(workdir, tones, env, tmp_path):
  broken = tmp_path / 'broken.wav'
  broken.write_bytes(b'not audio')
  files = [*tones[:4], broken, *tones[4:]]
  runs = {}
  for batch_size in (1, 2):  # groups of 4 files; one group of 8
    z_path = tmp_path / f'z{batch_size}.npy'
    out = run_predict(env, f'--workdir={workdir}', f'--batch_size={batch_size}',
                      f'--embeddings={z_path}', '--allow_failures', *files)
    assert out.returncode == 0, out.stderr[-3000:]
    runs[batch_size] = strict_lines(out.stdout), np.load(z_path)
  # Every line at its file's place, the unreadable one too.
  for lines, _ in runs.values():
    assert [line['file'] for line in lines] == list(map(str, files))
    assert 'error' in lines[4]
  for lines, z in runs.values():
    predicted = [line for line in lines if 'index' in line]
    assert [line['index'] for line in predicted] == list(range(6))
    assert z.shape == (6, EMBEDDING_DIM)
  # The same predictions and embedding rows, whatever the batches and groups.
  by_file = {b: {line['file']: (line, z[line['index']]) for line in lines if 'index' in line}
             for b, (lines, z) in runs.items()}
  for path, (line, z_row) in by_file[1].items():
    other, other_z = by_file[2][path]
    assert line['emotion'] == other['emotion']
    np.testing.assert_allclose(list(line['probabilities'].values()),
                               list(other['probabilities'].values()), atol=1e-5)
    np.testing.assert_allclose(z_row, other_z, atol=1e-5)


# --------------------------------------------------------------------------
# 4. The Python API.


@pytest.fixture(scope='module')
def classifier(workdir):
  return Classifier.from_workdir(str(workdir))


@pytest.mark.parametrize('batch_size', [0, -1])
def test_classifier_refuses_a_batch_size_below_one(classifier, batch_size):
  with pytest.raises(ConfigError, match=f'batch_size={batch_size}: must be at least 1'):
    classifier.classify([np.zeros(16000, np.float32)], 16000, batch_size=batch_size)


def test_classifier_takes_one_waveform_or_a_list(classifier, tones):
  waves = [sf.read(path, dtype='float32')[0] for path in tones[:3]]
  many = classifier.classify(waves, 16000, batch_size=2, embeddings=True)
  assert [type(p) for p in many] == [jaxser.Prediction] * 3
  for p in many:
    assert list(p.scores) == list(CLASSES) and p.label == max(p.scores, key=p.scores.get)
    assert abs(sum(p.scores.values()) - 1) < 1e-5 and p.embedding.shape == (EMBEDDING_DIM,)
  one = classifier.classify(waves[1], 16000)
  assert one.label == many[1].label and one.embedding is None
  np.testing.assert_allclose(list(one.scores.values()), list(many[1].scores.values()),
                             atol=1e-5)
  assert classifier.classify([], 16000) == []


def test_classifier_at_44khz_and_from_a_file_agree_with_predict(classifier, workdir,
                                                                 tones, env, tmp_path):
  wave, rate = sf.read(tones[2], dtype='float32')
  assert rate == 16000
  high = soxr.resample(wave, 16000, 44100, quality='HQ')
  stereo = tmp_path / 'stereo_44k.wav'
  sf.write(stereo, np.stack([high, high], axis=1), 44100, subtype='FLOAT')
  out = run_predict(env, f'--workdir={workdir}', stereo)
  assert out.returncode == 0, out.stderr[-3000:]
  (line,) = strict_lines(out.stdout)
  from_file = classifier.classify_file(stereo)
  from_array = classifier.classify(high, sampling_rate=44100)
  from_stereo = classifier.classify(np.stack([high, high], axis=1), 44100)
  for p in (from_file, from_array, from_stereo):
    assert p.label == line['emotion']
    np.testing.assert_allclose(list(p.scores.values()),
                               list(line['probabilities'].values()), atol=1e-5)
  # The same audio at 16 kHz: the resampling round trip changes little.
  native = classifier.classify(wave, 16000)
  np.testing.assert_allclose(list(native.scores.values()),
                             list(from_array.scores.values()), atol=0.02)


def test_classifier_refuses_bad_audio_naming_it(classifier, tmp_path):
  with pytest.raises(AudioError, match='waveform 1: 400 non-finite'):
    classifier.classify([np.zeros(800), np.array([0.0, np.nan] * 400)], 16000)
  with pytest.raises(AudioError, match='the waveform: sample rate 1000 Hz, below'):
    classifier.classify(np.zeros(800), 1000)
  with pytest.raises(AudioError, match=r'the waveform: expected \[samples\]'):
    classifier.classify(np.zeros((0,)), 16000)
  with pytest.raises(AudioError, match='does not exist'):
    classifier.classify_file(tmp_path / 'missing.wav')
  loud = tmp_path / 'loud.wav'
  write_loud_noise(loud)
  with pytest.raises(AudioError, match=f"{loud}: non-finite features: the audio's power"):
    classifier.classify_file(loud)
