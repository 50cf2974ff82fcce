#!/usr/bin/env bash
# tests/test_rillcat.sh - runs the built rillcat as a user would: files, TCP, Unix sockets,
# UDP, half-close, -k with many clients, timeouts, signals and the error messages.
set -u
R="${RILL_TEST_BUILDDIR:?}/rillcat"
T=$(mktemp -d)
trap 'jobs -p | xargs -r kill 2>/dev/null; rm -rf "$T"' EXIT
failed=0

run() { # name command [args]: one counted case; its output is shown when it fails
    local name=$1
    shift
    echo "[ RUN      ] $name"
    if (set -e; "$@") >"$T/$name.log" 2>&1; then
        echo "[       OK ] $name"
    else
        echo "[  FAILED  ] $name"
        sed 's/^/    /' "$T/$name.log"
        failed=$((failed + 1))
    fi
}

# serve LOG ARGS...: rillcat -v ARGS in the background; sets SPID, and PORT from its
# "listening on HOST:PORT (ADDRESS)" line.  LOG is emptied first: the job's own
# redirection may come after the first look, which must not find the line an earlier
# server left there (a Unix one, with no port: it ended the wait with PORT empty).
serve() {
    local log=$1 i
    shift
    : >"$log"
    timeout 40 "$R" -v "$@" 2>"$log" <&0 & # (an & job reads /dev/null unless told)
    SPID=$!
    for i in $(seq 200); do
        if grep -q 'listening on' "$log"; then # rillcat writes each line at once
            PORT=$(sed -n 's/.*listening on .*:\([0-9][0-9]*\) (.*/\1/p' "$log")
            # a socket address names its port; a Unix path has none to wait for
            if [ -n "$PORT" ] || ! grep -q 'listening on .* (' "$log"; then
                return 0
            fi
        fi
        sleep 0.025
    done
    echo "server did not start (or named no port):"; cat "$log"; return 1
}

# expect_exit CODE PID: the background rillcat ended with CODE.
expect_exit() {
    local rc=0
    wait "$2" || rc=$?
    [ "$rc" -eq "$1" ] || { echo "exit status $rc, expected $1"; return 1; }
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

big_file_through_tcp() {
    head -c 100M /dev/urandom >"$T/big"
    serve "$T/srv.err" tcp-listen:127.0.0.1:0 create:"$T/copy"
    timeout 40 "$R" file:"$T/big" tcp:127.0.0.1:"$PORT"
    expect_exit 0 "$SPID"
    [ "$(sha256sum <"$T/big")" = "$(sha256sum <"$T/copy")" ]
    grep -q ' 104857600 bytes' "$T/srv.err"
    rm -f "$T/big" "$T/copy"
}

# echo_over SERVER-ADDRESS CLIENT-ADDRESS: a line comes back, and both ends exit 0.
echo_over() {
    serve "$T/srv.err" "$1" echo
    local client=${2//PORT/$PORT}
    out=$(printf 'ping over %s\n' "$1" | timeout 10 "$R" - "$client")
    [ "$out" = "ping over $1" ] || { echo "got '$out'"; return 1; }
    expect_exit 0 "$SPID"
}
echo_tcp() { echo_over tcp-listen:127.0.0.1:0 tcp:127.0.0.1:PORT; }
echo_tcp_ipv6() {
    python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null ||
        { echo "no IPv6 loopback here"; return 0; }
    echo_over 'tcp-listen:[::1]:0' 'tcp:[::1]:PORT'
}
echo_unix() { echo_over unix-listen:"$T/sock" unix:"$T/sock"; [ ! -e "$T/sock" ]; }
echo_unix_abstract() { echo_over unix-listen:@rillcat-test-$$ unix:@rillcat-test-$$; }
echo_udp() { echo_over udp-listen:127.0.0.1:0 udp:127.0.0.1:PORT; }

# stdin_from KIND: stdin is a regular file or a pipe; what comes back is what was sent.
stdin_from() {
    head -c 300000 /dev/urandom >"$T/in"
    serve "$T/srv.err" tcp-listen:127.0.0.1:0 echo
    if [ "$1" = file ]; then
        timeout 10 "$R" - tcp:127.0.0.1:"$PORT" <"$T/in" >"$T/out"
    else
        cat "$T/in" | timeout 10 "$R" - tcp:127.0.0.1:"$PORT" | cat >"$T/out"
    fi
    cmp "$T/in" "$T/out"
    expect_exit 0 "$SPID"
}
stdin_file() { stdin_from file; }
stdin_pipe() { stdin_from pipe; }

# Our EOF goes first; the server answers later over the half still open.
half_close() {
    serve "$T/srv.err" tcp-listen:127.0.0.1:0 - >"$T/srv.out" < <(sleep 0.4; echo answer)
    out=$(echo question | timeout 10 "$R" - tcp:127.0.0.1:"$PORT")
    [ "$out" = answer ] || { echo "client got '$out'"; return 1; }
    expect_exit 0 "$SPID"
    [ "$(cat "$T/srv.out")" = question ]
}

# --close-on-eof: the server's file ends the connection though the client still has input.
close_on_eof() {
    printf 'the whole file\n' >"$T/f"
    serve "$T/srv.err" --close-on-eof tcp-listen:127.0.0.1:0 file:"$T/f"
    out=$(timeout 10 "$R" --close-on-eof - tcp:127.0.0.1:"$PORT" < <(sleep 20))
    [ "$out" = "the whole file" ]
    expect_exit 0 "$SPID"
}

keep_listening_50() {
    serve "$T/srv.err" -k tcp-listen:127.0.0.1:0 echo
    local i pids=()
    for i in $(seq 50); do
        head -c 65536 /dev/urandom >"$T/in.$i"
        timeout 20 "$R" - tcp:127.0.0.1:"$PORT" <"$T/in.$i" >"$T/out.$i" &
        pids+=($!)
    done
    for i in $(seq 50); do
        wait "${pids[$((i - 1))]}" || { echo "client $i failed"; return 1; }
        cmp "$T/in.$i" "$T/out.$i"
    done
    kill -INT "$SPID"
    expect_exit 130 "$SPID"
    grep -q '50 connections served' "$T/srv.err" || { echo "server log:"; cat "$T/srv.err"; return 1; }
}

# -k with stdio: every connection writes into the one stdout.
keep_listening_stdout() {
    serve "$T/srv.err" -k tcp-listen:127.0.0.1:0 - >"$T/srv.out"
    echo first | timeout 10 "$R" - tcp:127.0.0.1:"$PORT"
    echo second | timeout 10 "$R" - tcp:127.0.0.1:"$PORT"
    kill -TERM "$SPID"
    expect_exit 143 "$SPID"
    [ "$(cat "$T/srv.out")" = "$(printf 'first\nsecond')" ]
}

# A UDP peer that is not rillcat sends no end marker: its direction ends after a quiet second.
udp_plain_peer() {
    python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1], flush=True)
s.settimeout(10)
data, peer = s.recvfrom(1000)
s.sendto(b"answer to " + data, peer)
' >"$T/udp.port" &
    local i
    for i in $(seq 200); do [ -s "$T/udp.port" ] && break; sleep 0.025; done
    local start=$SECONDS
    out=$(echo question | timeout 10 "$R" - udp:127.0.0.1:"$(cat "$T/udp.port")")
    [ "$out" = "answer to question" ] || { echo "got '$out'"; return 1; }
    [ $((SECONDS - start)) -le 3 ]
}

verbose_counts() {
    printf 'hello' | timeout 10 "$R" -v - echo >"$T/out" 2>"$T/err"
    [ "$(cat "$T/out")" = hello ]
    grep -q '^rillcat: - -> echo: 5 bytes' "$T/err" && grep -q '^rillcat: echo -> -: 5 bytes' "$T/err"
}

refused() {
    local port rc=0
    port=$(free_port)
    msg=$(timeout 10 "$R" - tcp:127.0.0.1:"$port" </dev/null 2>&1) || rc=$?
    [ "$rc" -eq 1 ] || { echo "exit status $rc"; return 1; }
    [ "$msg" = "rillcat: tcp:127.0.0.1:$port: connection refused (ECONNREFUSED)" ] ||
        { echo "got: $msg"; return 1; }
}

missing_file() {
    local rc=0
    msg=$(timeout 10 "$R" file:"$T/nothing" - 2>&1) || rc=$?
    [ "$rc" -eq 1 ] && [ "$msg" = "rillcat: file:$T/nothing: no such file or directory (ENOENT)" ] ||
        { echo "status $rc: $msg"; return 1; }
}

# malformed ADDRESS: one line of reason naming it, then the usage; exit 2.
malformed() {
    local rc=0
    timeout 10 "$R" "$1" - </dev/null >"$T/out" 2>"$T/err" || rc=$?
    [ "$rc" -eq 2 ] || { echo "exit status $rc for '$1'"; cat "$T/err"; return 1; }
    head -1 "$T/err" | grep -qF "rillcat: $1: " && sed -n 2p "$T/err" | grep -q '^usage: rillcat'
}

usage_errors() {
    local rc
    for args in "-" "- - -" "-k - echo" "-t abc - echo" "--bogus - echo" "echo echo"; do
        rc=0
        # shellcheck disable=SC2086
        timeout 10 "$R" $args </dev/null 2>"$T/err" || rc=$?
        [ "$rc" -eq 2 ] && grep -q '^usage: rillcat' "$T/err" || { echo "'$args': $rc"; return 1; }
    done
    timeout 10 "$R" --version | grep -q '^rillcat [0-9]*\.[0-9]*\.[0-9]*$'
    timeout 10 "$R" --help | grep -q -- '--keep-listening'
}

sigterm_while_waiting() {
    serve "$T/srv.err" tcp-listen:127.0.0.1:0 -
    kill -TERM "$SPID"
    expect_exit 143 "$SPID"
}

idle_timeout() {
    local rc=0 start=$SECONDS
    serve "$T/srv.err" -t 0.3 tcp-listen:127.0.0.1:0 -
    timeout 10 "$R" - tcp:127.0.0.1:"$PORT" >/dev/null < <(sleep 3) &
    expect_exit 1 "$SPID"
    grep -q 'ETIMEDOUT' "$T/srv.err"
    [ $((SECONDS - start)) -le 2 ]
}

append_twice() {
    printf 'one\n' | timeout 10 "$R" - append:"$T/log"
    printf 'two\n' | timeout 10 "$R" - append:"$T/log"
    [ "$(cat "$T/log")" = "$(printf 'one\ntwo')" ]
    printf 'three\n' | timeout 10 "$R" - create:"$T/log"
    [ "$(cat "$T/log")" = three ]
}

progress_forced() {
    head -c 200000 /dev/urandom | timeout 10 "$R" -pp - create:"$T/p" 2>"$T/err"
    grep -q "$(printf '\r')-> " "$T/err" && grep -q 'B/s' "$T/err"
    [ "$(tail -c 1 "$T/err" | od -An -c | tr -d ' ')" = '\n' ]
}

run big_file_through_tcp big_file_through_tcp
run echo_tcp echo_tcp
run echo_tcp_ipv6 echo_tcp_ipv6
run echo_unix echo_unix
run echo_unix_abstract echo_unix_abstract
run echo_udp echo_udp
run stdin_file stdin_file
run stdin_pipe stdin_pipe
run half_close half_close
run close_on_eof close_on_eof
run keep_listening_50 keep_listening_50
run keep_listening_stdout keep_listening_stdout
run udp_plain_peer udp_plain_peer
run verbose_counts verbose_counts
run refused refused
run missing_file missing_file
while read -r name address; do
    run "malformed_$name" malformed "$address"
done <<'LIST'
tcp_no_port tcp:localhost
tcp_v6_bracket tcp:[::1
tcp_port_0 tcp:host:0
tcp_listen_port tcp-listen:99999
unix_empty unix:
unix_listen_empty unix-listen:
udp_no_port udp:host
udp_listen_port udp-listen:port-x
file_empty file:
create_empty create:
append_empty append:
unknown_type bogus:thing
LIST
run usage_errors usage_errors
run sigterm_while_waiting sigterm_while_waiting
run idle_timeout idle_timeout
run append_twice append_twice
run progress_forced progress_forced
exit $((failed > 0))
