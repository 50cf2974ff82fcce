#!/bin/bash
# tests/test_clients.sh - clients nobody here wrote (socat, Python's socket module) talk to
# the example echo server over TCP, a Unix socket file and an abstract Unix name, and the
# bytes must come back unchanged.  Prints cmocka-style lines so each case is counted;
# every wait is bounded by timeout(1).
set -u

BUILD=${RILL_TEST_BUILDDIR:?RILL_TEST_BUILDDIR is not set}
ECHO="$BUILD/example_echo"
TMP=$(mktemp -d /tmp/rill-clients.XXXXXX)
ABSTRACT="@rill-clients-$$"
SERVER_PID=
FAILED=0

cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

# run NAME COMMAND...: one test case.
run() {
    local name=$1
    shift
    echo "[ RUN      ] $name"
    if "$@"; then
        echo "[       OK ] $name"
    else
        echo "[  FAILED  ] $name"
        FAILED=$((FAILED + 1))
    fi
}

skip() {
    echo "[ RUN      ] $1"
    echo "[  SKIPPED ] $1 ($2)"
}

# Sends a file through socat to ADDRESS and compares what comes back.
socat_roundtrip() {
    local address=$1 input=$2
    timeout 20 socat -t 5 -T 10 - "$address" <"$input" >"$TMP/got" 2>"$TMP/socat.err" &&
        cmp -s "$input" "$TMP/got" || { cat "$TMP/socat.err" >&2; return 1; }
}

# Python's socket module: N concurrent clients each send SIZE random bytes, half-close,
# and read until EOF; every client must get exactly its own bytes back.
PY='
import os, socket, sys, threading
kind, where, n, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
errors = []
def client(i):
    try:
        if kind == "tcp":
            host, port = where.rsplit(":", 1)
            s = socket.create_connection((host, int(port)), timeout=10)
        else:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect("\0" + where[1:] if where.startswith("@") else where)
        data = os.urandom(size)
        sender = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
        sender.start()
        got = bytearray()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        sender.join()
        s.close()
        if bytes(got) != data:
            errors.append("client %d: %d of %d bytes, mismatch" % (i, len(got), size))
    except Exception as e:
        errors.append("client %d: %r" % (i, e))
threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
for t in threads: t.start()
for t in threads: t.join()
for e in errors: print(e, file=sys.stderr)
sys.exit(1 if errors else 0)
'

python_roundtrip() {
    timeout 30 python3 -c "$PY" "$@"
}

start_server() {
    "$ECHO" tcp 0 unix "$TMP/echo.sock" unix "$ABSTRACT" >"$TMP/out" 2>"$TMP/err" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        [ "$(grep -c '^listening on' "$TMP/out" 2>/dev/null)" = 3 ] && break
        sleep 0.05
    done
    TCP=$(sed -n 's/^listening on tcp \(.*\)$/\1/p' "$TMP/out")
    [ -n "$TCP" ] && [ -S "$TMP/echo.sock" ]
}

# SIGTERM: the server closes everything, removes its socket file and exits with 0.
stop_server() {
    kill -TERM "$SERVER_PID" || return 1
    local rc=0
    timeout 10 tail --pid="$SERVER_PID" -f /dev/null || return 1
    wait "$SERVER_PID" || rc=$?
    SERVER_PID=
    [ "$rc" = 0 ] && [ ! -e "$TMP/echo.sock" ]
}

if [ ! -x "$ECHO" ]; then
    skip echo_server "no $ECHO"
    exit 0
fi
head -c 1048576 /dev/urandom >"$TMP/big"
printf 'hello, rill\n' >"$TMP/line"

run start_server start_server
if [ -z "$SERVER_PID" ]; then
    cat "$TMP/err" >&2
    exit 1
fi
if command -v socat >/dev/null; then
    run socat_tcp_line socat_roundtrip "TCP:$TCP" "$TMP/line"
    run socat_tcp_1mib socat_roundtrip "TCP:$TCP" "$TMP/big"
    run socat_unix_line socat_roundtrip "UNIX-CONNECT:$TMP/echo.sock" "$TMP/line"
    run socat_unix_1mib socat_roundtrip "UNIX-CONNECT:$TMP/echo.sock" "$TMP/big"
    run socat_abstract_line socat_roundtrip "ABSTRACT-CONNECT:${ABSTRACT#@}" "$TMP/line"
else
    skip socat_clients "socat is not installed"
fi
if command -v python3 >/dev/null; then
    run python_tcp_one python_roundtrip tcp "$TCP" 1 300000
    run python_tcp_many python_roundtrip tcp "$TCP" 16 100000
    run python_unix_many python_roundtrip unix "$TMP/echo.sock" 16 100000
    run python_abstract python_roundtrip unix "$ABSTRACT" 4 50000
else
    skip python_clients "python3 is not installed"
fi
run sigterm_clean_exit stop_server

[ "$FAILED" = 0 ]
