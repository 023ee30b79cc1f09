"""``python -m dualteacher`` (also what ``torchrun -m dualteacher`` runs)."""

import sys

from dualteacher.cli import main

sys.exit(main())
