"""The `submit-training` console script and `python -m osmo_inline`: `cli.main` after imports.

Most of the client's start-up is importing Jinja2, PyYAML and argparse. Those imports create
many objects and almost no garbage, so the garbage collector's passes over them are wasted
(about a tenth of a dry run on a small machine). The collector is paused while they run, and
what they built is frozen out of later passes: it lives as long as the process anyway.
"""

from __future__ import annotations

import gc


def main() -> int:
    gc.disable()
    try:
        from osmo_inline.cli import main as run_client
    finally:
        gc.freeze()
        gc.enable()
    return run_client()
