"""Allow ``python -m grillstats_bridge``."""

import sys

from grillstats_bridge.cli import main

sys.exit(main())
