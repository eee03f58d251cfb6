#!/usr/bin/env bash
# Example submission, as in the seed: copy this file and put your own Azure values in.
# Add --dry-run after `--` to print the workflow instead of submitting it.
#
# The same workflow on this machine first (CPU, a gymnasium MuJoCo task, a local MLflow
# store; no cluster, no login):
#   ./submit-training.sh --local --task HalfCheetah-v5 --num-envs 16 --max-iterations 50
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
./submit-training.sh \
  --task Isaac-Velocity-Rough-Anymal-C-v0 \
  --max-iterations 600 \
  -- \
  azure_client_id="${AZURE_CLIENT_ID:-<YOUR_CLIENT_ID>}" \
  azure_tenant_id="${AZURE_TENANT_ID:-<YOUR_TENANT_ID>}" \
  azure_subscription_id="${AZURE_SUBSCRIPTION_ID:-<YOUR_SUBSCRIPTION_ID>}" \
  azure_resource_group=rg-example \
  azure_workspace_name=mlw-example \
  "$@"
