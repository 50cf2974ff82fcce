#!/usr/bin/env bash
# tests/test_examples.sh - runs every example in examples/ the way its header says to, with
# rillcat as the client, and checks what comes out.
set -u
B="${RILL_TEST_BUILDDIR:?}"
R="$B/rillcat"
T=$(mktemp -d)
trap 'jobs -p | xargs -r kill 2>/dev/null; rm -rf "$T"' EXIT
failed=0

run() { # name command [args]: one counted case; its output is shown when it fails
    local name=$1
    shift
    echo "[ RUN      ] $name"
    if [ ! -x "$B/example_$name" ]; then
        echo "[  SKIPPED ] $name (example_$name is not built)"
        return
    fi
    if (set -e; "$@") >"$T/$name.log" 2>&1; then
        echo "[       OK ] $name"
    else
        echo "[  FAILED  ] $name"
        sed 's/^/    /' "$T/$name.log"
        failed=$((failed + 1))
    fi
}

# start NAME ARGS...: example_NAME in the background; sets EPID, and PORT from the
# "listening on ... PORT" line it prints first.
start() {
    local name=$1
    shift
    timeout 30 "$B/example_$name" "$@" >"$T/$name.out" 2>"$T/$name.err" &
    EPID=$!
    for _ in $(seq 200); do
        PORT=$(sed -n 's/^listening on.*[: ]\([0-9][0-9]*\)$/\1/p' "$T/$name.out")
        [ -n "$PORT" ] && return 0
        sleep 0.025
    done
    echo "example_$name did not start:"; cat "$T/$name.out" "$T/$name.err"; return 1
}

stop() { kill "$EPID" 2>/dev/null; wait "$EPID" 2>/dev/null || true; }

echo_example() {
    start echo tcp 0
    out=$(printf 'one\ntwo\n' | timeout 10 "$R" - tcp:127.0.0.1:"$PORT")
    [ "$out" = "$(printf 'one\ntwo')" ] || { echo "got '$out'"; return 1; }
    stop
}

fiber_echo_example() {
    start fiber_echo 0
    out=$(printf 'hi\nquit\n' | timeout 10 "$R" - tcp:127.0.0.1:"$PORT")
    echo "$out" | grep -q '^> hi$' || { echo "got '$out'"; return 1; }
    stop
}

# Two clients: the second's line reaches the first, marked with the sender's name.
chat_example() {
    start chat 0
    timeout 10 "$R" - tcp:127.0.0.1:"$PORT" >"$T/a.out" < <(sleep 1.5) &
    local a=$!
    sleep 0.3 # the first client is in before the second speaks
    echo 'hello from b' | timeout 10 "$R" - tcp:127.0.0.1:"$PORT" >"$T/b.out"
    wait "$a"
    grep -q '^user2: joined$' "$T/a.out" && grep -q '^user2: hello from b$' "$T/a.out" &&
        grep -q '^user2: left$' "$T/a.out" || { echo "a got:"; cat "$T/a.out"; return 1; }
    ! grep -q 'hello from b' "$T/b.out" || { echo "b heard itself"; return 1; }
    stop
}

# rillcat echo server <- example_proxy <- rillcat client: a megabyte goes there and back.
proxy_example() {
    timeout 30 "$R" -v -k tcp-listen:127.0.0.1:0 echo 2>"$T/echo.err" &
    local echo_pid=$!
    for _ in $(seq 200); do grep -q 'listening on' "$T/echo.err" && break; sleep 0.025; done
    local echo_port
    echo_port=$(sed -n 's/.*listening on .*:\([0-9][0-9]*\) (.*/\1/p' "$T/echo.err")
    start proxy 0 127.0.0.1 "$echo_port"
    head -c 1000000 /dev/urandom >"$T/in"
    timeout 10 "$R" - tcp:127.0.0.1:"$PORT" <"$T/in" >"$T/out"
    cmp "$T/in" "$T/out"
    stop
    kill "$echo_pid"
}

lines_example() {
    out=$(printf 'one\r\ntwo\nthree\rfour' | timeout 10 "$B/example_lines")
    [ "$out" = "$(printf '     1  one\n     2  two\n     3  three\n     4  four')" ] ||
        { echo "got:"; echo "$out" | od -c; return 1; }
    out=$(printf 'a; b;c' | timeout 10 "$B/example_lines" ';\s*')
    [ "$out" = "$(printf '     1  a; \n     2  b;\n     3  c')" ] || { echo "got '$out'"; return 1; }
    seq 1 100000 | timeout 10 "$B/example_lines" >"$T/lines"
    [ "$(wc -l <"$T/lines")" -eq 100000 ] && awk '$1 != $2 { exit 1 }' "$T/lines"
}

run echo echo_example
run fiber_echo fiber_echo_example
run chat chat_example
run proxy proxy_example
run lines lines_example
exit $((failed > 0))
