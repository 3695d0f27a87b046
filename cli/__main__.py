"""``python -m cellbench.cli``: the same as the ``cellbench`` command."""

from cellbench.cli.main import main

raise SystemExit(main())
