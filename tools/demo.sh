#!/bin/sh
# tools/demo.sh BUILDDIR - `make demo`: rillcat at work on this machine, in a few lines.
# An echo server, a client talking through it, a file relayed over TCP with -v, a clean
# stop by signal.  Everything runs on 127.0.0.1 with ports the kernel picks; ends in < 10 s.
set -eu
R="${1:-build}/rillcat"
[ -x "$R" ] || { echo "demo: $R is not built (run make first)" >&2; exit 1; }
T=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$T"' EXIT INT TERM

# port_of LOG: waits for rillcat -v's "listening on HOST:PORT (ADDRESS)" line, prints PORT.
port_of() {
    i=0
    while ! grep -q 'listening on' "$1" 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -lt 100 ] || { echo "demo: no server came up" >&2; cat "$1" >&2; exit 1; }
        sleep 0.05
    done
    sed -n 's/.*listening on .*:\([0-9][0-9]*\) (.*/\1/p' "$1"
}

show() { printf '  $ %s\n' "$*"; }

echo "rillcat $("$R" --version | cut -d' ' -f2): connects any two endpoints and relays both ways."
echo

echo "1. An echo server on a free port, one instance per connection (-k):"
timeout 9 "$R" -v -k tcp-listen:127.0.0.1:0 echo 2>"$T/echo.log" &
echo_pid=$!
port=$(port_of "$T/echo.log")
show "rillcat -k tcp-listen:127.0.0.1:0 echo        # got port $port"
echo

echo "2. A client sends a line through it and prints the answer:"
show "echo 'hello, rill' | rillcat - tcp:127.0.0.1:$port"
echo 'hello, rill' | timeout 5 "$R" - "tcp:127.0.0.1:$port" | sed 's/^/    /'
echo

echo "3. 32 MiB of random bytes go over TCP into a new file (-v shows the counts):"
head -c 33554432 /dev/urandom >"$T/data.bin"
timeout 9 "$R" -v tcp-listen:127.0.0.1:0 create:"$T/copy.bin" 2>"$T/recv.log" &
recv_pid=$!
port2=$(port_of "$T/recv.log")
show "rillcat tcp-listen:127.0.0.1:0 create:copy.bin &"
show "rillcat -v file:data.bin tcp:127.0.0.1:$port2"
timeout 9 "$R" -v file:"$T/data.bin" "tcp:127.0.0.1:$port2" 2>&1 |
    grep -v 'end of input\|connected to' | sed "s|$T/||g; s/^/    /"
wait "$recv_pid"
if [ "$(sha256sum <"$T/data.bin")" = "$(sha256sum <"$T/copy.bin")" ]; then
    echo "    the copy's SHA-256 matches the original"
else
    echo "    the copy differs from the original!"
    exit 1
fi
echo

echo "4. SIGINT stops the echo server cleanly:"
kill -INT "$echo_pid"
status=0
wait "$echo_pid" || status=$?
served=$(sed -n 's/.*: \([0-9]* connections*\) served/\1/p' "$T/echo.log")
echo "    it served ${served:-?} and exited with status $status (128 + SIGINT)"
echo
echo "More: rillcat --help, man/rillcat.1, examples/, docs/guide.md"
