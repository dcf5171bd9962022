"""``python -m sim ...``: see :mod:`sim.cli`."""

import sys

from sim.cli import main
from sim.lifeline import die_with_parent

die_with_parent()  # started by a session: end with it
sys.exit(main())
