#!/usr/bin/env bash
# Quick start: from a fresh clone to a finished training run on this machine. No cluster, no
# GPU, no login: the rendered OSMO workflow runs locally (docs/local.md) and tracks into a
# project-local MLflow store.
#
#   ./quickstart.sh                    # set up .venv, then train HalfCheetah-v5 locally
#   ./quickstart.sh -m 50              # any submit-training flag overrides the defaults below
#
# HalfCheetah-v5 with 16 environments for 300 iterations (about 150k steps) with skrl, the
# local default, takes about a minute of training on an idle 2-core machine, and the mean
# return climbs from below 0 (the random policy) past +500 (bench/RESULTS.md, "Time to
# learn"). skrl reports the return only in iterations where episodes ended: an episode lasts
# 1000 steps, 32 steps an iteration, so every ~31 iterations. -b rsl_rl trains with RSL-RL.
# With --video the policy is filmed after iterations 1, 100, 200 and 300 (rendered headless in
# the background, training goes on); then the trained policy is evaluated (10 episodes, a new
# MLflow run) and the script ends with the evaluation summary and where the last video is.
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

# The launcher's lines "resume with: --checkpoint-uri runs:/<id>/checkpoints/final ..." and
# "video: the trained policy: <file> (MLflow artifact runs:/...)".
checkpoint=$(sed -n 's/^resume with: --checkpoint-uri \([^ ]*\) .*/\1/p' "$log" | tail -n 1)
video=$(grep '^video: the trained policy: ' "$log" | tail -n 1 || true)
if [ "$status" -eq 0 ] && [ -n "$checkpoint" ]; then
  echo "== evaluating the trained policy: 10 episodes, deterministic actions =="
  .venv/bin/submit-training --local --evaluate -c "$checkpoint" --episodes 10 -n 10 \
    2>&1 | tee "$log" || status=$?
  summary=$(grep '^evaluated ' "$log" | tail -n 1 || true)
  [ -n "$summary" ] && echo "== evaluation: ${summary#evaluated }"
fi
if [ -n "$video" ]; then
  echo "== the video of the trained policy =="
  echo "${video#video: the trained policy: }"
fi
exit "$status"
