"""`python -m devtools COMMAND`, run from the repository root (see devtools.cli)."""

import sys

from devtools.cli import main

sys.exit(main())
