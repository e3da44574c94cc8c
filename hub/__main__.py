"""``python -m hub ...``: see hub.cli."""

from hub.cli import main

raise SystemExit(main())
