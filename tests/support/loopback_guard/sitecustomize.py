"""Imported by Python at start-up (site.py imports `sitecustomize` from sys.path) in the
processes the Azure tests start with this directory first on PYTHONPATH: installs the
loopback guard of `support/loopback.py` before any library opens a socket."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from loopback import install_guard  # noqa: E402

install_guard(os.environ.get("LOOPBACK_GUARD_LOG"))
