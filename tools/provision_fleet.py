"""Provision a fleet of meters in one go: ``headend meter provision`` as a script (the docs use it).

    python tools/provision_fleet.py --db headend.db --count N --out DIR [options]

takes the options of ``headend meter provision`` (headend/meters/fleet.py, which documents them).
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from headend.meters.fleet import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
