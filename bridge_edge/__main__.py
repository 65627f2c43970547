"""``python -m bridge_edge ...``: the same CLI as ``bridge-edge`` (and what ``torchrun -m`` runs)."""

import sys

from bridge_edge.cli import main

sys.exit(main())
