"""`python -m osmo_inline`: the same as the `submit-training` console script."""

import sys

from osmo_inline.console import main

sys.exit(main())
