#!/usr/bin/env bash
# Sets up .venv with the client, the runtime (torch CPU, rsl-rl, skrl, gymnasium MuJoCo, MLflow) and
# the test tools. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

python_bin=${PYTHON_BIN:-python3}
[ -x .venv/bin/python ] || "$python_bin" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

# torch first, pinned: anything that asks for plain `torch` would otherwise pull a CUDA build.
"${pip[@]}" torch==2.13.0
"${pip[@]}" -c constraints.txt -e '.[runtime,dev]'

# The older rsl-rl releases that Isaac Lab images ship (2.2 -> 2.3.3, 2.3 -> 3.0.1), each in
# its own directory: the compatibility tests put one first on sys.path. Pure Python; they share
# the venv's torch and other dependencies.
for version in 2.3.3 3.0.1; do
  target=.ci/deps/rsl_rl-$version
  [ -d "$target" ] || "${pip[@]}" --no-deps --target "$target" "rsl-rl-lib==$version"
done
# The skrl release Isaac Lab 2.2/2.3 images ship (1.4.3; the venv has 2.1.1 for Isaac Lab 3.0),
# the same way: pure Python, sharing the venv's torch, gymnasium, tensorboard and tqdm.
for version in 1.4.3; do
  target=.ci/deps/skrl-$version
  [ -d "$target" ] || "${pip[@]}" --no-deps --target "$target" "skrl==$version"
done
