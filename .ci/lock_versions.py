"""Writes constraints.txt: the exact versions of jaxser's dependencies as installed.

  ./launch.sh lock      (runs this in the project's environment)

Walks the requirements of `jaxser[test]` (and theirs, recursively, with their
environment markers) through the installed distributions' metadata, so the
file holds what the test suite ran with and nothing else that happens to be
installed beside it. `launch.sh` installs with `-c constraints.txt`; refresh
the file deliberately, after the suite passed with the new versions.
"""

import importlib.metadata as metadata
import os
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pinned(root: str = 'jaxser', extras: tuple = ('test',)) -> dict[str, str]:
  """{canonical name: installed version} of everything `root[extras]` needs."""
  found, todo = {}, [(root, set(extras))]
  while todo:
    name, wanted = todo.pop()
    dist = metadata.distribution(name)
    for text in dist.requires or []:
      req = Requirement(text)
      if req.marker and not any(req.marker.evaluate({'extra': e})
                                for e in (wanted or {''})):
        continue
      key = canonicalize_name(req.name)
      if key in found:
        continue
      try:
        found[key] = metadata.version(req.name)
      except metadata.PackageNotFoundError:
        sys.exit(f'lock_versions: {req.name} (needed by {name}) is not installed')
      todo.append((req.name, set(req.extras)))
  found.pop('jaxser', None)
  return found


def main() -> None:
  versions = pinned()
  lines = ['# The exact versions the test suite passed with (Python '
           f'{sys.version_info.major}.{sys.version_info.minor}, '
           f'{sys.platform}).',
           '# Written by ./launch.sh lock (.ci/lock_versions.py); launch.sh installs with',
           '# pip install -c constraints.txt. Refresh it deliberately.']
  lines += [f'{name}=={version}' for name, version in sorted(versions.items())]
  path = os.path.join(ROOT, 'constraints.txt')
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print(f'{path}: {len(versions)} pinned versions')


if __name__ == '__main__':
  main()
