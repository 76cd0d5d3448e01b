"""What every jaxser command shares: its common flags and how a fault ends it.

Each command (`main`, `crossval`, `ablate`, `predict`) defines its flags only
when run (`define_flags`, so importing it defines nothing) and starts with
`cli.run(main, define_flags)`; the installed `jaxser` script runs them as
subcommands (`console_main`: `jaxser train|crossval|ablate|predict|export`). The
flags are parsed by `parse_flags`: an unknown `--config.<field>` or a bad
flag value is one line, with ml_collections' "did you mean" where it has
one. `--config` takes a config file (`path.py[:arg]`) or the name of a
packaged config (`demo`, `demo:quick`, `default`, `as_run:stft`, ...).

A command's `main` is wrapped with `@cli.exits_on_error`: a `JaxserError`
(bad input, a refused resume, a failed write), an unexpected `OSError` (a
full disk) or SIGINT ends the process with one line on stderr, naming the
file or value and what is wrong, and no traceback. The process then exits at
once (`os._exit`): orbax and TensorBoard keep background threads whose
clean-up after a failed write would otherwise print tracebacks of their own
after the message. The work that must finish first (closing checkpoints,
releasing the workdir lock) is done by the `with`/`finally` blocks the error
passed through on its way here.
"""

import functools
import importlib
import logging as std_logging
import os
import sys
from typing import Callable, NoReturn

from absl import app
from absl import flags
from ml_collections import config_flags

from jaxser import fileio
from jaxser import xla_options
from jaxser.errors import ConfigError
from jaxser.errors import JaxserError

__all__ = ['COMMANDS', 'config_path', 'console_main', 'define_config_flags',
           'exits_on_error', 'fail', 'indices', 'packaged_configs',
           'parse_flags', 'run']

MAX_LINE = 400  # characters of one message line
CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs')

# The `jaxser` script's subcommands: name -> (module, what it does).
COMMANDS = {
    'train': ('jaxser.main', 'train and evaluate one fold'),
    'crossval': ('jaxser.crossval', 'every fold of a protocol, several seeds'),
    'ablate': ('jaxser.ablate', "the paper's studies, with reports"),
    'predict': ('jaxser.predict', 'classify audio files with a trained run'),
    'export': ('jaxser.export', 'a trained run as StableHLO, to run without jaxser'),
    'augment': ('jaxser.augment', "generative augmentation of a run's last layer"),
    'score': ('jaxser.score', 'a trained run scored on a whole labelled corpus'),
}


def define_config_flags(workdir_help: str) -> None:
  """`--config` (a config file, `path.py[:arg]`) and `--workdir`, required."""
  flags.DEFINE_string('workdir', None, workdir_help)
  config_flags.DEFINE_config_file(
      'config', None, 'The experiment config: a file (path.py, or path.py:arg '
      f'for a variant) or a packaged one by name ({", ".join(packaged_configs())}; '
      'demo:quick).')
  flags.mark_flags_as_required(['config', 'workdir'])


def packaged_configs() -> list[str]:
  """The names of the configs that ship in `jaxser/configs/`."""
  return sorted(name[:-3] for name in os.listdir(CONFIGS)
                if name.endswith('.py') and not name.startswith('_'))


def config_path(value: str) -> str:
  """`--config`'s value as a file: a packaged name becomes its file's path.

  `demo`, `demo:quick` -> `<jaxser>/configs/demo.py[:quick]`; anything with a
  path separator or ending in `.py` is a file and is returned as given.
  """
  name, sep, arg = value.partition(':')
  if os.sep in name or name.endswith('.py'):
    return value
  if name not in packaged_configs():
    fail(f'--config={value}: no config file {name} and no packaged config of '
         f'that name (packaged: {", ".join(packaged_configs())})')
  return os.path.join(CONFIGS, name + '.py') + sep + arg


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with every fault as one `jaxser:` line.

  ml_collections raises AttributeError (or KeyError) from inside the flag
  parser for a `--config.<field>` the config does not have, which would end
  in a traceback; absl's own errors would print the whole usage.
  """
  argv = [f'--config={config_path(a.split("=", 1)[1])}' if a.startswith('--config=')
          else a for a in argv]
  for arg in argv[1:]:  # else ml_collections reports a missing file vaguely
    if arg.startswith('--config='):
      path = arg.split('=', 1)[1].split(':', 1)[0]
      if not os.path.isfile(path):
        fail(f'{arg}: no config file {path} (from {os.getcwd()})')
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    detail = e
    while isinstance(detail, BaseException) and detail.args:
      detail = detail.args[0]  # the KeyError inside, then its text
    detail = str(detail).replace('\n', '; ')
    overrides = [a.split('=')[0] for a in argv[1:] if a.startswith('--config.')]
    if not any(f"'{o.rsplit('.', 1)[-1]}'" in detail for o in overrides):
      raise  # not an override's field: an error in the config file itself
    fail(f'unknown config field {detail} (overrides given: {", ".join(overrides)}); '
         'the config file lists the fields that exist')
  except flags.Error as e:
    # A config file that raised carries its traceback in the message: keep
    # the flag and the error itself.
    lines = [line for line in str(e).splitlines() if line.strip()]
    fail(lines[0] if len(lines) == 1 else f'{lines[0]} {lines[-1].strip()}')


def run(main: Callable, define_flags: Callable[[], None]) -> None:
  """Defines a command's flags and runs its `main` under absl."""
  define_flags()
  # jax logs its failed attempt at a TPU on every machine without one.
  std_logging.getLogger('jax._src.xla_bridge').addFilter(_not_the_tpu_probe)
  xla_options.enable_compilation_cache()
  app.run(main, flags_parser=parse_flags)


def _not_the_tpu_probe(record: std_logging.LogRecord) -> bool:
  return not str(record.msg).startswith("Unable to initialize backend 'tpu'")


def console_main() -> None:
  """The `jaxser` script: `jaxser <command> [flags]` runs a command."""
  command = sys.argv[1] if len(sys.argv) > 1 else ''
  if command not in COMMANDS:
    usage = '\n'.join(f'  jaxser {name:9s} {what}'
                      for name, (_, what) in COMMANDS.items())
    text = (f'usage: jaxser <command> [flags]; jaxser <command> --help lists '
            f'its flags\n{usage}\n')
    if command in ('', '-h', '--help', 'help'):
      sys.stdout.write(text)
      sys.exit(0)
    fail(f'unknown command {command!r}\n{text}')
  module = importlib.import_module(COMMANDS[command][0])
  sys.argv = [f'jaxser {command}'] + sys.argv[2:]
  run(module.main, module.define_flags)


def fail(message: str) -> NoReturn:
  """Prints `jaxser: <message>` on stderr, once, and exits with status 1."""
  lines = [line if len(line) <= MAX_LINE else line[:MAX_LINE - 3] + '...'
           for line in str(message).splitlines() or ['']]
  text = 'jaxser: ' + '\n'.join(lines)
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):  # a closed or full stdout
      pass
  try:
    os.write(2, (text + '\n').encode(errors='replace'))
  finally:
    os._exit(1)  # pylint: disable=protected-access (see the module docstring)


def exits_on_error(main: Callable) -> Callable:
  """Wraps a command's `main(argv)`: faults end it through `fail`."""
  @functools.wraps(main)
  def wrapped(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except JaxserError as e:
      fail(str(e))
    except KeyboardInterrupt:
      fail('interrupted (SIGINT)')
    except OSError as e:
      fail(f'{e.filename + ": " if e.filename else ""}{fileio.reason(e)}')
  return wrapped


def indices(values, flag: str) -> list[int]:
  """Seeds or fold numbers given on the command line, as ints >= 0.

  Raises:
    ConfigError: naming the flag and the value that is not one.
  """
  out = []
  for text in values:
    try:
      value = int(text)
    except (TypeError, ValueError):
      value = -1
    if value < 0:
      raise ConfigError(f'{flag}: {text!r} is not a whole number >= 0')
    out.append(value)
  return out
