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
"${pip[@]}" -c constraints.txt -e '.[runtime,azure,dev]'
# azureml-mlflow without its dependencies: its mlflow-skinny<=3.15 pin would move MLflow (see
# the azure extra in pyproject.toml; its other requirements come with that extra).
"${pip[@]}" --no-deps azureml-mlflow==1.62.0.post6

# Headless rendering for videos (training.video): MuJoCo renders through EGL, with Mesa's
# software renderer where there is no GPU (PyOpenGL comes with the runtime extra above). The
# Debian packages only where missing (this project's machines have them).
if command -v dpkg >/dev/null; then
  missing_debs=()
  for deb in libegl1 libegl-mesa0 libgl1-mesa-dri; do
    dpkg -s "$deb" >/dev/null 2>&1 || missing_debs+=("$deb")
  done
  if [ ${#missing_debs[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing_debs[@]}"
    else
      echo "setup: videos need ${missing_debs[*]}: sudo apt-get install ${missing_debs[*]}" >&2
    fi
  fi
fi

# Azurite, the Azure blob store emulator the Azure ML tests upload artifacts to (npm; Node 20+).
if [ ! -x .ci/azurite/node_modules/.bin/azurite-blob ]; then
  if command -v npm >/dev/null; then
    npm install --silent --no-audit --no-fund --prefix .ci/azurite azurite@3.37.0
  else
    echo "setup: npm not found; the Azure ML tests (tests/azureml) will be skipped" >&2
  fi
fi

# The older rsl-rl releases that Isaac Lab images ship (2.2 -> 2.3.3, 2.3 -> 3.0.1), each in
# its own directory: the compatibility tests put one first on sys.path. Pure Python; they share
# the venv's torch and other dependencies.
for version in 2.3.3 3.0.1; do
  target=.ci/deps/rsl_rl-$version
  [ -d "$target" ] || "${pip[@]}" --no-deps --target "$target" "rsl-rl-lib==$version"
done

# Isaac Lab's own sources for the tests (tests/support/isaaclab_releases.py): the PyPI wheels
# carry the isaaclab, isaaclab_rl, isaaclab_tasks ... trees (2.x under isaaclab/source/<pkg>,
# 3.0 at the top level). --no-deps: Isaac Sim itself is not installed (a stand-in plays its app).
# 3.0.0 asks for Python 3.12 in its metadata; its sources parse and import with 3.11.
# What their cfg code imports: isaaclab.utils (configclass) warp, toml, trimesh (2.3) and
# lazy_loader (3.0); 3.0's task registry (resolve_task_config) hydra-core.
"${pip[@]}" warp-lang==1.19.0 toml==0.10.2 trimesh==4.5.3 lazy-loader==0.6 hydra-core==1.3.2
for version in 2.2.0 2.3.2.post1 3.0.0; do
  target=.ci/deps/isaaclab-$version
  [ -d "$target" ] || "${pip[@]}" --no-deps --ignore-requires-python --target "$target" \
    "isaaclab==$version"
done

# The skrl release Isaac Lab 2.2/2.3 images ship (1.4.3; the venv has 2.1.1 for Isaac Lab 3.0),
# the same way: pure Python, sharing the venv's torch, gymnasium, tensorboard and tqdm.
for version in 1.4.3; do
  target=.ci/deps/skrl-$version
  [ -d "$target" ] || "${pip[@]}" --no-deps --target "$target" "skrl==$version"
done
