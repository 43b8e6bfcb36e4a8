#!/bin/sh
# Pushpin instance N of several in front of one nowplaying (docs/deploy.md, "Fan-out past one
# process"): prints the shipped pushpin.conf with what must differ between instances changed,
# and the lines nowplaying needs for it. Each instance is its own set of processes, so each
# holds up to its own LimitNOFILE of viewers.
#
#   for n in 1 2 3; do sh deploy/pushpin/instance.sh $n > /etc/pushpin/pushpin-$n.conf; done
#   cp deploy/pushpin/pushpin@.service /etc/systemd/system/
#   systemctl enable --now pushpin@1 pushpin@2 pushpin@3
#
# Instance N: viewers on 127.0.0.1:(7999 - N), every other TCP port of the shipped file moved
# by 10 x N (port_offset; publish on 5561 + 10 x N), its sockets in /run/pushpin-N, its logs in
# /var/log/pushpin-N. tests/deploy/test_pushpin.py checks what this prints.
set -eu
n=${1:?usage: instance.sh N (1-99)}
case $n in *[!0-9]* | '' | 0 | ???*) echo "instance.sh: N must be 1-99" >&2; exit 2 ;; esac
here=$(dirname "$0")
sed -e "s|^rundir=/var/run/pushpin\$|rundir=/run/pushpin-$n|" \
    -e "s|^port_offset=0\$|port_offset=$((10 * n))|" \
    -e "s|^http_port=127.0.0.1:7999\$|http_port=127.0.0.1:$((7999 - n))|" \
    -e "s|^logdir=/var/log/pushpin\$|logdir=/var/log/pushpin-$n|" \
    "$here/pushpin.conf"
echo
echo "# nowplaying: add http://127.0.0.1:$((5561 + 10 * n))/publish/ to NOWPLAYING_GRIP_PUBLISH_URL"
echo "# and ipc:///run/pushpin-$n/pushpin-stats to NOWPLAYING_GRIP_STATS_URL (same order)."
