"""Building the Dockerfile with no registry: a local Debian base image and wheels made here.

No container registry is reachable from these machines, so the base image is a minbase Debian
rootfs with Debian's ``python3`` and the PNG cards' fonts (debootstrap, then ``docker import``),
and the build installs wheels ``pip wheel`` made on this host (``--no-index --find-links``), in a
build with ``--network none``. Both are cached outside the repository (``NOWPLAYING_TEST_CACHE``,
default ``/var/cache/nowplaying-test``): the rootfs tarball by Debian release and package list,
the wheels by the dependency list, so a second run builds in seconds. Bookworm's Python is
3.11.2, where redis-py needs ``async-timeout`` (this host's newer 3.11 does not), so it is asked
for explicitly.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("NOWPLAYING_TEST_CACHE", "/var/cache/nowplaying-test"))
RELEASE = "bookworm"
PACKAGES = (
    "python3",
    "python3-venv",
    *(ROOT / "src/nowplaying/cards/fonts.txt").read_text().split(),
)
"""What the base holds: Python, and the fonts the Dockerfile would otherwise fetch (the build has
no network)."""
_FLAVOUR = hashlib.sha256(",".join(PACKAGES).encode()).hexdigest()[:8]
BASE_TAG = f"nowplaying-test-base:{RELEASE}-{_FLAVOUR}"
MIRROR = os.environ.get("NOWPLAYING_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
EXTRA_WHEELS = ("setuptools>=77", "async-timeout>=4.0.3")
"""The build backend (the image builds the package from source) and redis's dependency on
Python < 3.11.3."""
CONTEXT_FILES = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md")


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    """Run the docker CLI; its stdout."""
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:2])} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def logs(name: str) -> str:
    """A container's output, stdout and stderr (where the server logs) together."""
    done = subprocess.run(
        ["docker", "logs", name], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout + done.stderr


def docker_problem() -> str | None:
    """Why docker cannot be used here, or None."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed (apt-get install docker.io)"
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "dockerd did not answer `docker info` within 30 s"
    if done.returncode != 0:
        return f"dockerd is not running or not reachable: {done.stderr.strip()[:300]}"
    return None


def base_image() -> str:
    """The local base image (imported once from the cached rootfs, made once by debootstrap)."""
    if (
        subprocess.run(
            ["docker", "image", "inspect", BASE_TAG], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return BASE_TAG
    tarball = CACHE / f"{RELEASE}-minbase-{_FLAVOUR}.tar"
    if not tarball.exists():
        _debootstrap(tarball)
    docker("import", str(tarball), BASE_TAG, timeout=300)
    return BASE_TAG


def _debootstrap(tarball: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise FileNotFoundError("debootstrap is not installed (apt-get install debootstrap)")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="rootfs-") as tmp:
        root = Path(tmp) / "root"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(PACKAGES),
                RELEASE,
                str(root),
                MIRROR,
            ],
            check=True,
            capture_output=True,
            timeout=900,
        )
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True)
        partial.rename(tarball)


def wheels() -> Path:
    """Wheels of every dependency (and the build backend), made on this host with pip."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = sorted([*project["dependencies"], *EXTRA_WHEELS])
    key = hashlib.sha256("\n".join([sys.version.split()[0], *wanted]).encode()).hexdigest()
    folder = CACHE / f"wheels-{key[:16]}"
    if not (folder / ".complete").exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(folder), *wanted],
            check=True,
            capture_output=True,
            timeout=600,
        )
        (folder / ".complete").touch()
    return folder


def build_context(directory: Path) -> Path:
    """What ``docker build .`` would see from the repository, plus ``wheels/``."""
    for name in CONTEXT_FILES:
        shutil.copy2(ROOT / name, directory / name)
    shutil.copytree(
        ROOT / "src", directory / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    shutil.copytree(wheels(), directory / "wheels", ignore=shutil.ignore_patterns(".complete"))
    return directory


def build_image(tag: str) -> str:
    """Build the repository's Dockerfile on the local base, offline; the image tag."""
    base = base_image()
    previous = _image_id(tag)
    with tempfile.TemporaryDirectory(prefix="np-image-") as tmp:
        context = build_context(Path(tmp))
        docker(
            "build",
            "--network",
            "none",
            "--build-arg",
            f"BASE={base}",
            "--build-arg",
            "PIP_OPTIONS=--no-index --find-links /src/wheels",
            "--tag",
            tag,
            str(context),
            timeout=900,
        )
    # The classic builder keeps the build stage as an untagged image: drop ours.
    docker("image", "prune", "--force", "--filter", "label=org.nowplaying.stage=build")
    if previous and previous != _image_id(tag):
        docker("rmi", previous, check=False)  # the last run's image, now untagged (if unused)
    return tag


def _image_id(tag: str) -> str | None:
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else None
