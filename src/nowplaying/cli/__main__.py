"""``python -m nowplaying.cli``: the ``nowplaying`` command."""

from nowplaying.cli.main import main

raise SystemExit(main())
