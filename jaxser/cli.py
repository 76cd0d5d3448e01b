"""How every jaxser command ends on a fault: one `jaxser:` line, exit status 1.

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
import os
import sys
from typing import Callable, NoReturn

from absl import logging

from jaxser import fileio
from jaxser.errors import ConfigError
from jaxser.errors import JaxserError

MAX_LINE = 400  # characters of one message line


def fail(message: str) -> NoReturn:
  """Prints `jaxser: <message>` on stderr and exits with status 1."""
  lines = [line if len(line) <= MAX_LINE else line[:MAX_LINE - 3] + '...'
           for line in str(message).splitlines() or ['']]
  text = 'jaxser: ' + '\n'.join(lines)
  logging.error('%s', text)
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
