#!/usr/bin/env bash
# Quick start: from a fresh clone to a finished training run on this machine. No cluster, no
# GPU, no login: the rendered OSMO workflow runs locally (docs/local.md) and tracks into a
# project-local MLflow store.
#
#   ./quickstart.sh                    # set up .venv, then train HalfCheetah-v5 locally
#   ./quickstart.sh -m 50              # any submit-training flag overrides the defaults below
#
# HalfCheetah-v5 with 16 environments for 300 iterations (about 300k steps) takes about a
# minute of training on an idle 2-core machine, and the mean reward climbs from -214 (the
# random policy) to about +580 (bench/RESULTS.md). The first ~30 iterations show
# falling rewards: an episode lasts 1000 steps, so full episodes only arrive from then on.
# With --video the policy is filmed after iterations 1, 100, 200 and 300 (rendered headless in
# the background, training goes on); the script ends with where the last video is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

echo "== setting up .venv (first time: a few minutes) =="
bash scripts/setup.sh

echo "== training HalfCheetah-v5 locally (Ctrl-C stops it) =="
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
.venv/bin/submit-training --local \
  --task HalfCheetah-v5 \
  --num-envs 16 \
  --max-iterations 300 \
  --video \
  "$@" 2>&1 | tee "$log" || status=$?

# The launcher's line "video: the trained policy: <file> (MLflow artifact runs:/...)".
video=$(grep '^video: the trained policy: ' "$log" | tail -n 1 || true)
if [ -n "$video" ]; then
  echo "== the video of the trained policy =="
  echo "${video#video: the trained policy: }"
fi
exit "$status"
