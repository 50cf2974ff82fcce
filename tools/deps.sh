#!/bin/sh
# tools/deps.sh PKG... - installs the Debian packages that are missing.  As root it runs
# apt-get update once and apt-get install -y; otherwise it prints the one line to run.
missing=""
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "rill needs these Debian packages; run:"
    echo "  sudo apt-get install -y$missing"
    exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq $missing >/dev/null || {
    echo "apt-get install failed for:$missing" >&2; exit 1; }
