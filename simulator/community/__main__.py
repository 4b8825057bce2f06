"""``python -m simulator.community``: the ``firewarden simulate`` command."""

import sys

from simulator.community.cli import main

sys.exit(main())
