"""``python -m hltrun configs/path.yaml``: the same as the ``hltrun`` command."""

from hltrun.framework.cli import main

raise SystemExit(main())
