#!/bin/sh
# The fonts the PNG cards draw with (src/nowplaying/cards/fonts.txt, Debian package names):
# installed with apt-get when missing and run as root, else named with the command to run.
# `make install`, .ci/run and the Dockerfile all read the same list.
set -eu
list="$(dirname "$0")/../src/nowplaying/cards/fonts.txt"
missing=""
for pkg in $(cat "$list"); do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null; }
else
  echo "PNG cards draw text with fonts not installed here; run: sudo apt-get install$missing" >&2
fi
