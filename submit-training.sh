#!/usr/bin/env bash
# Seed-compatible entry point: same arguments as `submit-training` (see --help, docs/client.md).
# Uses the repository's .venv when there is one, else python3 with the package on PYTHONPATH.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ -x "$here/.venv/bin/python" ]]; then
  python_bin="$here/.venv/bin/python"
else
  python_bin=${PYTHON_BIN:-python3}
  export PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$python_bin" -m osmo_inline "$@"
