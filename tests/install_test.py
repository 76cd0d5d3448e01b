"""The wheel as a user installs it: built, installed apart from the checkout,
imported and run from another folder through the `jaxser` script.

The installed environment is a fresh virtual environment whose third-party
packages are the test environment's (added to its path by a `.pth` line, so
nothing is downloaded), with the wheel installed into it without dependencies.
Whether those dependencies are declared is checked on their own: every
distribution that importing jaxser's modules loads must be one the wheel
requires (not only under an extra), and the core modules (`center_loss`,
`losses`, `metrics`) must import without flax, librosa or orbax.
"""

import ast
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What `import jaxser.<module>` may load, per module group, and what it must not.
PUBLIC = ('jaxser.main', 'jaxser.crossval', 'jaxser.ablate', 'jaxser.predict',
          'jaxser.plots', 'jaxser.features', 'jaxser.models', 'jaxser.cli')
CORE = ('jaxser.center_loss', 'jaxser.losses', 'jaxser.metrics')
NOT_FOR_CORE = ('flax', 'librosa', 'orbax')

# Run inside the installed environment: the distributions behind the
# third-party modules that importing `modules` loaded.
_LOADED = '''
import importlib, importlib.metadata as md, json, sys
blocked = sys.argv[2].split(',') if sys.argv[2] else []
class Block:
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in blocked:
      raise ImportError(f'{name} is blocked in this test')
sys.meta_path.insert(0, Block())
before = set(sys.modules)
for module in sys.argv[1].split(','):
  importlib.import_module(module)
owners = md.packages_distributions()
loaded = {m.split('.')[0] for m in set(sys.modules) - before}
dists = sorted({d for m in loaded if m in owners for d in owners[m]} - {'jaxser'})
import jaxser
print(json.dumps({'dists': dists, 'file': jaxser.__file__,
                  'version': jaxser.__version__}))
'''


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
  """`(wheel path, environment's python, environment's bin folder)`."""
  tmp = tmp_path_factory.mktemp('install')
  # Built from a copy of what the wheel is made of, so no build/ folder in
  # the checkout (stale files there would go into later wheels).
  source = tmp / 'source'
  shutil.copytree(os.path.join(ROOT, 'jaxser'), source / 'jaxser',
                  ignore=shutil.ignore_patterns('__pycache__'))
  for name in ('setup.cfg', 'pyproject.toml', 'README.md', 'LICENSE'):
    shutil.copy(os.path.join(ROOT, name), source)
  subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps',
                  '--no-build-isolation', '--wheel-dir', str(tmp / 'dist'),
                  str(source)], check=True, capture_output=True, cwd=tmp)
  (wheel,) = (tmp / 'dist').glob('jaxser-*.whl')
  env = tmp / 'env'
  subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(env)], check=True)
  python = env / 'bin' / 'python'
  purelib = subprocess.run(
      [str(python), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
      check=True, capture_output=True, text=True).stdout.strip()
  # The test environment's packages, but not its editable jaxser (a .pth line
  # adds a folder without running the .pth files inside it).
  with open(os.path.join(purelib, 'test_dependencies.pth'), 'w') as f:
    f.write(sysconfig.get_paths()['purelib'] + '\n')
  subprocess.run([sys.executable, '-m', 'pip', '--python', str(python), 'install',
                  '--quiet', '--no-deps', '--no-index', str(wheel)],
                 check=True, capture_output=True)
  return wheel, python, env / 'bin'


def _requires(wheel) -> set[str]:
  """The distributions the wheel requires unconditionally (not extras)."""
  with zipfile.ZipFile(wheel) as z:
    (name,) = [n for n in z.namelist() if n.endswith('.dist-info/METADATA')]
    lines = z.read(name).decode().splitlines()
  from packaging.requirements import Requirement  # pylint: disable=g-import-not-at-top
  from packaging.utils import canonicalize_name  # pylint: disable=g-import-not-at-top
  out = set()
  for line in lines:
    if line.startswith('Requires-Dist:'):
      req = Requirement(line.split(':', 1)[1].strip())
      if req.marker is None or req.marker.evaluate({'extra': ''}):
        out.add(canonicalize_name(req.name))
  return out


def _loaded(python, modules, blocked=(), cwd=None) -> dict:
  result = subprocess.run([str(python), '-c', _LOADED, ','.join(modules),
                           ','.join(blocked)], capture_output=True, text=True,
                          cwd=cwd, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert result.returncode == 0, result.stderr[-2000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_wheel_holds_configs_license_types_and_the_script(installed):
  wheel, _, _ = installed
  with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    entry_points = z.read(next(n for n in names if n.endswith('entry_points.txt')))
  for config in ('default', 'demo', 'as_run', 'stft', 'softmax_only', 'tiny'):
    assert f'jaxser/configs/{config}.py' in names
  assert 'jaxser/py.typed' in names
  assert any(n.endswith('.dist-info/licenses/LICENSE') for n in names)
  assert b'jaxser = jaxser.cli:console_main' in entry_points
  assert not any(n.startswith(('tests/', 'bench/')) for n in names)


def _imported_top_level(wheel) -> set[str]:
  """The top-level modules the wheel's jaxser code imports (outside stdlib)."""
  names = set()
  with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
      if name.startswith('jaxser/') and name.endswith('.py'):
        for node in ast.walk(ast.parse(z.read(name))):
          if isinstance(node, ast.Import):
            names.update(alias.name.split('.')[0] for alias in node.names)
          elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split('.')[0])
  return names - set(sys.stdlib_module_names) - {'jaxser', '__future__'}


def test_every_imported_distribution_is_required(installed, tmp_path):
  wheel, python, _ = installed
  from packaging.utils import canonicalize_name  # pylint: disable=g-import-not-at-top
  owners = importlib.metadata.packages_distributions()
  imported = _imported_top_level(wheel)
  unknown = sorted(m for m in imported if m not in owners)
  assert not unknown, f'jaxser imports modules no installed distribution provides: {unknown}'
  needed = {canonicalize_name(owners[m][0]) for m in imported}
  missing = sorted(needed - _requires(wheel))
  assert not missing, f'jaxser imports these but does not require them: {missing}'
  # Imported from the environment, not from the checkout, in another folder.
  loaded = _loaded(python, PUBLIC, cwd=tmp_path)
  assert not loaded['file'].startswith(ROOT), loaded['file']
  from jaxser import __version__  # pylint: disable=g-import-not-at-top
  assert loaded['version'] == __version__


def test_core_modules_import_without_flax_librosa_orbax(installed, tmp_path):
  _, python, _ = installed
  loaded = _loaded(python, CORE, blocked=NOT_FOR_CORE, cwd=tmp_path)
  assert {'jax', 'optax', 'chex'} <= set(loaded['dists'])


def test_installed_script_trains_and_predicts(installed, tone_manifest, tmp_path):
  _, _, bin_dir = installed
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  workdir = tmp_path / 'run'
  common = dict(capture_output=True, text=True, cwd=tmp_path, env=env)
  help_text = subprocess.run([str(bin_dir / 'jaxser')], check=True, **common).stdout
  assert 'jaxser train' in help_text and 'jaxser export' in help_text
  train = subprocess.run(
      [str(bin_dir / 'jaxser'), 'train', '--config=tiny', f'--workdir={workdir}',
       '--config.corpus=manifest', f'--config.corpus_root={tone_manifest}',
       f'--config.cache_dir={tmp_path / "cache"}', '--config.plots=False',
       '--config.num_train_steps=4'], **common)
  assert train.returncode == 0, train.stderr[-3000:]
  assert (workdir / 'results.json').exists()
  clip = os.path.join(os.path.dirname(tone_manifest), 's1_angry_0.wav')
  predict = subprocess.run([str(bin_dir / 'jaxser'), 'predict',
                            f'--workdir={workdir}', clip], **common)
  assert predict.returncode == 0, predict.stderr[-3000:]
  line = json.loads(predict.stdout.strip().splitlines()[-1])
  assert line['file'] == clip and line['emotion'] in line['probabilities']
