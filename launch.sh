#!/usr/bin/env bash
# jaxser launcher: sets up a virtual environment in the checkout, then runs a job.
#
#   ./launch.sh test [pytest args]   the test suite
#   ./launch.sh demo [flags]         the main job on the synthesised demo corpus
#   ./launch.sh bench [--peer]       the benchmarks in bench/
#   ./launch.sh ablate [flags]       the paper's ablations on the demo corpus (--quick: CPU size)
#   ./launch.sh setup                only create / update the environment
#   ./launch.sh lock                 rewrite constraints.txt from the environment
#
# The environment lives in .venv/ (override with JAXSER_VENV) and is installed
# with the tested versions of constraints.txt; it is reinstalled only when
# setup.cfg, pyproject.toml, constraints.txt or the accelerator change.
# JAXSER_ACCELERATOR=cuda12|cuda13|tpu installs jax for that accelerator
# (jaxser's extras of the same names) instead of the CPU-only jaxlib.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
venv="${JAXSER_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

setup() {
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "launch.sh: jaxser needs Python >= 3.10; '$python' is $("$python" --version 2>&1)" >&2
    exit 2
  fi
  if [ ! -x "$venv/bin/python" ]; then
    echo "launch.sh: creating virtual environment in $venv"
    "$python" -m venv "$venv"
  fi
  local want have extras="test" accelerator="${JAXSER_ACCELERATOR:-}"
  case "$accelerator" in
    "") ;;
    cuda12|cuda13|tpu) extras="test,$accelerator" ;;
    *) echo "launch.sh: JAXSER_ACCELERATOR must be cuda12, cuda13 or tpu (or unset for the CPU), got '$accelerator'" >&2
       exit 2 ;;
  esac
  want="$( (cat setup.cfg pyproject.toml constraints.txt; echo "$extras") | sha256sum | cut -d' ' -f1)"
  have="$(cat "$venv/.jaxser-installed" 2>/dev/null || true)"
  if [ "$want" != "$have" ]; then
    echo "launch.sh: installing jaxser[$extras] and its dependencies into $venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip setuptools wheel
    "$venv/bin/python" -m pip install --quiet -c constraints.txt -e ".[$extras]"
    echo "$want" > "$venv/.jaxser-installed"
  fi
}

cmd="${1:-help}"
[ $# -gt 0 ] && shift
case "$cmd" in
  setup)
    setup ;;
  test)
    setup
    exec "$venv/bin/python" -m pytest tests "$@" ;;
  demo)
    # The paper's model on the synthesised demo corpus (jaxser/configs/demo.py); the
    # corpus and its features are built on first use and cached.
    setup
    workdir="${JAXSER_DEMO_WORKDIR:-$root/workdir/demo}"
    exec "$venv/bin/python" -m jaxser.main --config=jaxser/configs/demo.py \
      --workdir="$workdir" --alsologtostderr "$@" ;;
  bench)
    setup
    for script in bench/*.py; do
      echo "== $script"
      "$venv/bin/python" "$script" "$@"
    done ;;
  ablate)
    # The paper's settings 1-4 and lambda/alpha sweeps (jaxser/ablate.py) on the
    # demo corpus; --quick is the 2-core CPU size (demo.py:quick, one seed and
    # one fold). Later flags override earlier.
    setup
    config=jaxser/configs/demo.py
    for arg in "$@"; do [ "$arg" = --quick ] && config=jaxser/configs/demo.py:quick; done
    exec "$venv/bin/python" -m jaxser.ablate --config="$config" \
      --workdir="$root/workdir/ablate" --alsologtostderr "$@" ;;
  lock)
    setup
    exec "$venv/bin/python" .ci/lock_versions.py ;;
  help|-h|--help)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' ;;
  *)
    echo "launch.sh: unknown command '$cmd' (try: test, demo, bench, ablate, setup, lock)" >&2
    exit 2 ;;
esac
