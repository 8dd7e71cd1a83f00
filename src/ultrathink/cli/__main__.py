"""``python -m ultrathink.cli``: the same as the ``ultrathink`` console script."""

import sys

from ultrathink.cli import main

sys.exit(main())
