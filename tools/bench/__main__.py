"""``python -m hltrun.tools.bench`` is ``hltbench`` (used where a study re-runs itself in a fresh interpreter)."""

import sys

from hltrun.tools.bench.cli import main

sys.exit(main())
