"""Write src/osmo_inline/gymnasium_ids.txt: the ids gymnasium registers on import.

The client checks ``-t`` without importing gymnasium (it is not a client dependency), so it
reads this list. Regenerate it whenever constraints.txt moves gymnasium:

    .venv/bin/python scripts/gymnasium_ids.py

tests/client/test_client_tasks.py fails while the list differs from the installed gymnasium.
"""

from __future__ import annotations

import sys
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "src" / "osmo_inline" / "gymnasium_ids.txt"


def current_ids() -> list[str]:
    import gymnasium

    return sorted(gymnasium.registry)


def main() -> int:
    import gymnasium

    ids = current_ids()
    TARGET.write_text("\n".join(ids) + "\n", encoding="utf-8")
    print(f"{TARGET}: {len(ids)} ids of gymnasium {gymnasium.__version__}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
