"""A real small filesystem that fills up: a tmpfs mounted for a test (root only), and a filler."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path


class NoDisk(Exception):
    """The tmpfs could not be mounted (not root, or no mount namespace)."""


@contextlib.contextmanager
def small_disk(where: Path, size: str = "1m") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``where`` (created) for the block; unmount it after."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        raise NoDisk(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; the filler file, to delete for space."""
    filler = disk / "filler"
    with filler.open("ab", buffering=0) as out, contextlib.suppress(OSError):
        for size in (65536, 4096, 512, 1):  # the last scraps too
            while out.write(b"\0" * size):
                pass
    return filler
