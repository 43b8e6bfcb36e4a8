"""The ``nowplaying`` command (entry points: ``cli.main:main``, ``python -m nowplaying.cli``)."""
