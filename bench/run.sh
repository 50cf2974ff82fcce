#!/bin/sh
# bench/run.sh BUILDDIR - the side-by-side benchmark run that `make bench` calls.
#
# Servers (whichever of bench/echo_{rill,epoll,uv,event,fiber} were built, and "uring":
# echo_rill on the io_uring backend, RILL_BACKEND=uring, when the build has it) run pinned
# to one CPU and the load client to the other.  Every number comes from the same run:
#   ping-pong   msgs/s at 1, 100 and 1000 connections; RUNS runs per cell, interleaved
#               (run 1 of every cell, then run 2, ...), median with min-max; in a run all
#               servers are up and one client drives them in turn in 250 ms slices (the
#               first server rotated from run to run); server CPU per message from
#               /proc/PID/stat (utime+stime) over the driven slices
#   paired      rill (and rill on uring) and one peer (epoll, libuv) served at the same
#               time on the same CPUs:
#               the ratio of their server CPU per message, which outside load disturbs
#               alike (PAIR_RUNS runs per cell)
#   syscalls    per message at 100 connections: strace -c -f on the server for a fixed
#               window bracketed by the client's exact message counts, and the same with
#               perf's syscall tracepoints when perf works (no ptrace slow-down)
#   callgrind   user-space instructions per message at 100 connections (valgrind)
#   pump        2 GiB over one connection into rill (both backends), libuv, a blocking
#               read loop (the limit) and a hand-written epoll receiver (the limit of any
#               readiness-based receiver), the order rotated from run to run; and rill
#               with a 64 KiB read low water mark (rill_stream_set_read_lowat, as the
#               guide teaches bulk receivers) beside the blocking loop with the same
#               SO_RCVLOWAT, for reference
#   pumppair    rill's receiver and one peer's (the blocking loop, the epoll receiver,
#               libuv; rill with the mark against both blocking loops) at the same time,
#               1 GiB each, receivers sharing one CPU and senders the other: the ratio of
#               their CPU per byte (getrusage), steady where throughput swings
#   idle        server VmRSS growth per idle connection, 10,000 connections
#   timers      bench/timers (rill against libuv)
#   others      bench/framing, pipe, splice, fiber_switch when built: their lines as printed
# Then one table of ratios to the epoll limit and to libuv on stdout and in
# bench/results/latest.md, the raw values in latest.raw, a chart in latest.png, and the
# profiles in bench/results/profile-*.txt.
#
# Knobs (environment): RILL_BENCH_SECS (3), RILL_BENCH_RUNS (7: one server's runs swing
# by ±15% on a shared VM, so 3 give a median that is mostly noise), RILL_BENCH_CONNS
# ("1 100 1000"), RILL_BENCH_PROFILE (1; 0 skips strace/perf/callgrind),
# RILL_BENCH_CG_CONNS (connection counts profiled with callgrind: "100 1000"),
# RILL_BENCH_PAIR_RUNS (5), RILL_BENCH_PUMP_RUNS (15) and RILL_BENCH_PUMP_PAIR_RUNS (11: a
# pump run takes about a second, and its MB/s swings by ±30%, the paired ratio by ±15%, so
# a median of 5 or 7 says little), RILL_BENCH_ONLY (a space-separated subset of: pingpong paired
# syscalls callgrind pump pumppair idle timers others, or "none"), RILL_BENCH_RAW (a latest.raw to
# start from), RILL_BENCH_URING (1; 0 leaves the uring backend out), RILL_BENCH_SLICE_MS (250:
# ping-pong serves all servers at once and drives them in turn in slices this long; 0 runs
# them one at a time, back to back).
set -u

BUILD=${1:-build-bench}
B=$BUILD/bench
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$HERE/results
SECS=${RILL_BENCH_SECS:-3}
RUNS=${RILL_BENCH_RUNS:-7}
PAIR_RUNS=${RILL_BENCH_PAIR_RUNS:-5}
PUMP_RUNS=${RILL_BENCH_PUMP_RUNS:-15}
PUMP_PAIR_RUNS=${RILL_BENCH_PUMP_PAIR_RUNS:-11}
SLICE_MS=${RILL_BENCH_SLICE_MS:-250}
CONNS=${RILL_BENCH_CONNS:-"1 100 1000"}
PROFILE=${RILL_BENCH_PROFILE:-1}
CG_CONNS=${RILL_BENCH_CG_CONNS:-"100 1000"}
ONLY=${RILL_BENCH_ONLY:-"pingpong paired syscalls callgrind pump pumppair idle timers others"}
S_CPU=0
C_CPU=1
SIZE=64
PUMP_BYTES=2147483648
IDLE_CONNS=10000

if [ ! -x "$B/pingpong" ]; then
    echo "run.sh: $B/pingpong not built (meson setup -Dbench=true, then ninja)" >&2
    exit 1
fi
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/rill-bench.XXXXXX)
RAW=$TMP/raw
LOG=$OUT/latest.log
: >"$RAW"
: >"$LOG"
# RILL_BENCH_RAW=FILE starts from earlier values (with RILL_BENCH_ONLY=none: re-reports them).
[ -n "${RILL_BENCH_RAW:-}" ] && cp "$RILL_BENCH_RAW" "$RAW"
PIDS=""

cleanup() {
    for p in $PIDS; do
        kill "$p" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ulimit -n "$(ulimit -Hn)" 2>/dev/null
unset RILL_BACKEND

# Ports below the ephemeral range, a fresh one per server start (no TIME_WAIT clashes).
PORT=$((20000 + $$ % 9000))
next_port() { PORT=$((PORT + 1)); }

wants() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }
log() { echo "$*" >>"$LOG"; }
say() { echo "$*" >&2; log "$*"; }
# val "k1=v1 k2=v2" k2 -> v2
val() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
put() { echo "$1 $2" >>"$RAW"; }
now() { date +%s; }

have_perf=0
if command -v perf >/dev/null 2>&1 && perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then
    have_perf=1
fi
have_strace=0
command -v strace >/dev/null 2>&1 && have_strace=1

# The uring backend runs the same programs with RILL_BACKEND=uring (no silent fallback:
# rill_loop_new fails when io_uring is refused, and that run is reported as failed).
HAVE_URING=0
if [ "${RILL_BENCH_URING:-1}" = 1 ] && grep -q '^#define RILL_HAVE_URING' "$BUILD/rill_config.h" 2>/dev/null; then
    HAVE_URING=1
fi
SERVERS=""
for s in rill uring epoll uv event fiber; do
    if [ $s = uring ]; then
        [ $HAVE_URING = 1 ] && [ -x "$B/echo_rill" ] && SERVERS="$SERVERS uring"
        continue
    fi
    [ -x "$B/echo_$s" ] && SERVERS="$SERVERS $s"
done
[ -n "$SERVERS" ] || { echo "run.sh: no echo server built" >&2; exit 1; }

start_server() { # NAME PORT [wrapper...]: sets SPID
    name=$1
    port=$2
    shift 2
    exe=$B/echo_$name
    if [ "$name" = uring ]; then
        exe=$B/echo_rill
        set -- env RILL_BACKEND=uring "$@"
    fi
    taskset -c $S_CPU "$@" "$exe" "$port" >>"$LOG" 2>&1 &
    SPID=$!
    PIDS="$PIDS $SPID"
}

stop_pid() { # SIGTERM, and SIGKILL after 3 s (valgrind does not end a thread blocked
    # in io_uring_enter on SIGTERM)
    kill "$1" 2>/dev/null
    i=0
    while [ $i -lt 30 ] && [ -n "$(sed -n 's/^[0-9]* ([^)]*) \([^Z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null)" ]; do
        sleep 0.1
        i=$((i + 1))
    done
    kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

# Sends SIGUSR1 to the client and waits for the "mark msgs=N" line number `nth`.
mark() { # CLIENT_PID FILE NTH -> prints N
    kill -USR1 "$1" 2>/dev/null
    i=0
    while [ $i -lt 100 ]; do
        m=$(sed -n 's/^mark msgs=//p' "$2" | sed -n "$3p")
        [ -n "$m" ] && { echo "$m"; return; }
        sleep 0.05
        i=$((i + 1))
    done
    echo 0
}

start_load() { # PORT CONNS FILE: a client that runs until killed; sets CPID
    taskset -c $C_CPU "$B/pingpong" 127.0.0.1 "$1" "$2" 0 $SIZE >"$3" 2>>"$LOG" &
    CPID=$!
    PIDS="$PIDS $CPID"
}

# ---- ping-pong -------------------------------------------------------------------------
rotate() { # K WORDS...: the words starting from the K-th (0-based), wrapping around
    k=$1
    shift
    n=$#
    k=$((k % n))
    i=0
    out=""
    for w in "$@"; do
        [ $i -ge $k ] && out="$out $w"
        i=$((i + 1))
    done
    i=0
    for w in "$@"; do
        [ $i -lt $k ] && out="$out $w"
        i=$((i + 1))
    done
    echo $out
}

# One ping-pong result line: records it and prints the progress line.
pp_put() { # SERVER CONNS RUN OUTPUT
    log "pingpong $1 conns=$2 run=$3: $4"
    mps=$(val "$4" msgs_per_s)
    if [ -z "$mps" ]; then
        say "   $1 conns=$2 run $3: FAILED (see $LOG)"
        return
    fi
    put "pp.$1.$2.mps" "$mps"
    cpu=$(val "$4" server_cpu_ns_per_msg)
    [ -n "$cpu" ] && put "pp.$1.$2.cpu" "$cpu"
    echo "   run $3 conns=$2 $1: $mps msgs/s, server ${cpu:-?} ns CPU/msg" >&2
}

# A run serves every server at once, each on its own port, and one client drives them in
# turn in slices of SLICE_MS (bench/pingpong.c): the machine's slow spells, which last
# seconds to minutes on a shared VM and once took every server from 7,500 to 2,000 msgs/s
# at 1 connection, then fall on all servers alike instead of on whichever ran then.
run_pingpong() {
    if [ "$SLICE_MS" = 0 ]; then
        run_pingpong_apart
        return
    fi
    say "== ping-pong: servers:$SERVERS; conns: $CONNS; $RUNS runs, each driving every server in turn in ${SLICE_MS} ms slices for ${SECS}s (+1 s warm-up) of its own"
    r=1
    while [ $r -le "$RUNS" ]; do
        order=$(rotate $((r - 1)) $SERVERS) # which server goes first changes each run
        for c in $CONNS; do
            ports=""
            pids=""
            for s in $order; do
                next_port
                start_server "$s" $PORT
                ports="$ports,$PORT"
                pids="$pids,$SPID"
            done
            out=$(PINGPONG_SLICE_MS=$SLICE_MS taskset -c $C_CPU "$B/pingpong" 127.0.0.1 "${ports#,}" \
                "$c" "$SECS" $SIZE "${pids#,}" 2>>"$LOG")
            for pid in $(echo "$pids" | tr , ' '); do stop_pid "$pid"; done
            i=0
            for s in $order; do
                i=$((i + 1))
                port=$(echo "${ports#,}" | cut -d, -f$i)
                pp_put "$s" "$c" "$r" "$(echo "$out" | grep "^port=$port ")"
            done
        done
        r=$((r + 1))
    done
}

# RILL_BENCH_SLICE_MS=0: one server at a time, back to back.
run_pingpong_apart() {
    say "== ping-pong: servers:$SERVERS; conns: $CONNS; $RUNS runs x ${SECS}s (+1 s warm-up), one server at a time"
    r=1
    while [ $r -le "$RUNS" ]; do
        # each run starts with another server: no server always follows the same one
        order=$(rotate $((r - 1)) $SERVERS)
        for c in $CONNS; do
            for s in $order; do
                next_port
                start_server "$s" $PORT
                out=$(taskset -c $C_CPU "$B/pingpong" 127.0.0.1 $PORT "$c" "$SECS" $SIZE "$SPID" 2>>"$LOG")
                stop_pid "$SPID"
                pp_put "$s" "$c" "$r" "$out"
            done
        done
        r=$((r + 1))
    done
}

# A paired run's two ratios, rill's side over the peer's: KEY.cpu (CPU per unit of work)
# and KEY.RATE (throughput); sets cr and mr for the caller's progress line.  Fails, and
# records nothing, when a value is missing or the peer's is zero.
put_ratios() { # KEY RATE CPU_A CPU_B RATE_A RATE_B
    for v in "$3" "$4" "$5" "$6"; do [ -n "$v" ] || return 1; done
    [ "$4" != 0 ] && [ "$6" != 0 ] || return 1
    cr=$(awk -v a="$3" -v b="$4" 'BEGIN { printf "%.4f", a / b }')
    mr=$(awk -v a="$5" -v b="$6" 'BEGIN { printf "%.4f", a / b }')
    put "$1.cpu" "$cr"
    put "$1.$2" "$mr"
}

# ---- paired ping-pong: rill and one peer at the same time ---------------------------------
# Both servers share the server CPU and both clients the client CPU, so whatever else the
# machine does slows both alike: the ratio of their server CPU per message is steady to a
# few percent where back-to-back runs swing by ±15%.  (Throughput tends to equal out here:
# the clients share their CPU fairly; the CPU per message is the figure to read.)
run_paired() {
    sides=rill
    case " $SERVERS " in *" uring "*) sides="rill uring" ;; esac
    say "== paired ping-pong: $sides with each peer at once; conns: $CONNS; $PAIR_RUNS runs x ${SECS}s"
    for side in $sides; do
        key=pair
        [ $side = uring ] && key=pairu
        for peer in epoll uv; do
            case " $SERVERS " in *" $peer "*) ;; *) continue ;; esac
            for c in $CONNS; do
                r=1
                while [ $r -le "$PAIR_RUNS" ]; do
                    next_port
                    pa=$PORT
                    next_port
                    pb=$PORT
                    # who starts first alternates (rill, then the peer, on odd runs)
                    if [ $((r % 2)) = 1 ]; then
                        start_server $side $pa
                        sa=$SPID
                        start_server "$peer" $pb
                        sb=$SPID
                    else
                        start_server "$peer" $pb
                        sb=$SPID
                        start_server $side $pa
                        sa=$SPID
                    fi
                    taskset -c $C_CPU "$B/pingpong" 127.0.0.1 $pa "$c" "$SECS" $SIZE $sa >"$TMP/pa" 2>>"$LOG" &
                    ca=$!
                    taskset -c $C_CPU "$B/pingpong" 127.0.0.1 $pb "$c" "$SECS" $SIZE $sb >"$TMP/pb" 2>>"$LOG" &
                    cb=$!
                    wait $ca
                    wait $cb
                    stop_pid $sa
                    stop_pid $sb
                    oa=$(tail -n 1 "$TMP/pa")
                    ob=$(tail -n 1 "$TMP/pb")
                    log "paired $side+$peer conns=$c run=$r: $side: $oa; $peer: $ob"
                    ua=$(val "$oa" server_cpu_ns_per_msg)
                    ub=$(val "$ob" server_cpu_ns_per_msg)
                    ma=$(val "$oa" msgs_per_s)
                    mb=$(val "$ob" msgs_per_s)
                    if ! put_ratios "$key.$peer.$c" mps "$ua" "$ub" "$ma" "$mb"; then
                        say "   $side+$peer conns=$c run $r: FAILED (see $LOG)"
                        r=$((r + 1))
                        continue
                    fi
                    echo "   run $r conns=$c $side+$peer: server CPU/msg $side/$peer ${cr}, msgs/s $side/$peer ${mr}" >&2
                    r=$((r + 1))
                done
            done
        done
    done
}

# ---- syscalls per message at 100 connections -----------------------------------------
# strace -c prints one row per syscall: % time, seconds, usecs/call, calls, [errors], name.
strace_rows() { # FILE MSGS SERVER
    awk -v m="$2" -v s="$3" '
        $1 ~ /^[0-9.]+$/ && NF >= 5 { printf "sys.%s.%s %.4f\n", s, $NF, $4 / m }' "$1"
}

run_syscalls() {
    say "== syscalls per message at 100 connections (strace: $have_strace, perf: $have_perf)"
    for s in $SERVERS; do
        next_port
        start_server "$s" $PORT
        start_load $PORT 100 "$TMP/marks"
        sleep 1.5
        if [ $have_perf = 1 ]; then
            ev="raw_syscalls:sys_enter"
            for n in read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait \
                epoll_pwait epoll_ctl clock_gettime io_uring_enter; do
                ev="$ev,syscalls:sys_enter_$n"
            done
            # --per-thread: the client's own writes (one per message) count the messages
            # of exactly the window the server's syscalls were counted in.
            perf stat --per-thread -x, -e "$ev" -p "$SPID,$CPID" -o "$TMP/perf" -- sleep "$SECS" 2>>"$LOG"
            cat "$TMP/perf" >>"$LOG"
            awk -F, -v c="-$CPID" -v s="$s" '
                $4 ~ /sys_enter/ && $2 ~ /^[0-9]+$/ {
                    n = $4; sub(/.*sys_enter_?/, "", n); if (n == "") n = "total"
                    if (substr($1, length($1) - length(c) + 1) == c) { if (n == "write") msgs += $2 }
                    else srv[n] += $2
                }
                END {
                    if (msgs > 0) for (n in srv) if (srv[n] > 0) printf "psys.%s.%s %.4f\n", s, n, srv[n] / msgs
                }' "$TMP/perf" >>"$RAW"
        fi
        if [ $have_strace = 1 ]; then
            strace -c -f -p "$SPID" -o "$TMP/strace" 2>"$TMP/strace.err" &
            st=$!
            i=0
            while [ $i -lt 100 ] && ! grep -q attached "$TMP/strace.err" 2>/dev/null; do
                sleep 0.02
                i=$((i + 1))
            done
            m1=$(mark "$CPID" "$TMP/marks" 1)
            sleep "$SECS"
            kill -INT $st
            wait $st 2>/dev/null
            m2=$(mark "$CPID" "$TMP/marks" 2)
            # The messages are the server's own writes in the traced window (one per echoed
            # 64-byte message, in every server): the client's marks bracket that window
            # only to within the attach and detach, and strace slows the server ~10x, so
            # they were off by up to 5%.
            msgs=$(awk '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF ~ /^(write|writev|sendto|sendmsg)$/ { n += $4 }
                END { print n + 0 }' "$TMP/strace")
            [ "$msgs" -gt 0 ] || msgs=$((m2 - m1))
            if [ $msgs -gt 0 ]; then
                strace_rows "$TMP/strace" $msgs "$s" >>"$RAW"
                {
                    echo "## $s: strace -c -f over ${SECS}s, $msgs messages (writes; client marks: $((m2 - m1))) at 100 connections"
                    cat "$TMP/strace"
                    echo
                } >>"$TMP/strace.all"
            fi
        fi
        stop_pid "$CPID"
        stop_pid "$SPID"
        echo "   $s: $(grep "^sys.$s.total" "$RAW" | cut -d' ' -f2) (strace)," \
            "$(grep "^psys.$s.total" "$RAW" | cut -d' ' -f2) (perf) syscalls/msg" >&2
    done
    [ -f "$TMP/strace.all" ] && cp "$TMP/strace.all" "$OUT/profile-strace.txt"
}

# ---- callgrind: instructions per message at 100 connections ----------------------------
# Self cost per function from a callgrind file (uncompressed names): every cost line
# counts for the current fn= except the one after calls=, which is the callee's total.
cg_self() { # FILE MSGS
    awk -v m="$2" '
        /^fn=/ { fn = substr($0, 4); next }
        /^calls=/ { skip = 1; next }
        /^[0-9+*-]/ { if (skip) { skip = 0; next } self[fn] += $2; d1[fn] += $6 + $7 }
        END { for (k in self) if (self[k] > 0) printf "%10.1f %6.2f  %s\n", self[k] / m, d1[k] / m, k }' "$1" |
        sort -rn
}

# Calls to the write family in a callgrind file: in ping-pong every echoed message is one
# write (one message in flight per connection), so this counts the messages of exactly
# the profiled window; the client's marks bracket it only to within callgrind_control's
# latency.
cg_writes() { # FILE
    awk '/^cfn=/ { w = ($0 ~ /^cfn=(write|writev|sendmsg|send|sendto)(@.*)?$/); next }
         /^calls=/ { if (w) { split(substr($0, 7), a, " "); n += a[1] } w = 0; next }
         END { print n + 0 }' "$1"
}

run_callgrind() {
    command -v valgrind >/dev/null 2>&1 || { say "== callgrind: valgrind missing, skipped"; return; }
    say "== callgrind: user-space instructions per message at $CG_CONNS connections"
    : >"$OUT/profile-callgrind.txt"
    for c in $CG_CONNS; do
        for s in $SERVERS; do
            callgrind_one "$s" "$c"
        done
    done
}

callgrind_one() { # SERVER CONNS
    s=$1
    c=$2
    next_port
    cg=$TMP/cg.$s.$c
    start_server "$s" $PORT valgrind --tool=callgrind --callgrind-out-file="$cg.%p" \
        --dump-instr=no --compress-strings=no --cache-sim=yes
    start_load $PORT "$c" "$TMP/marks"
    sleep 3 # valgrind starts slowly; then a warm-up
    callgrind_control -z "$SPID" >/dev/null 2>&1
    m1=$(mark "$CPID" "$TMP/marks" 1)
    sleep "$SECS"
    m2=$(mark "$CPID" "$TMP/marks" 2)
    callgrind_control -d "$SPID" >/dev/null 2>&1
    stop_pid "$CPID"
    stop_pid "$SPID"
    marks=$((m2 - m1))
    f=$(ls "$cg".*.1 2>/dev/null | head -n 1)
    if [ $marks -le 0 ] || [ -z "$f" ]; then
        say "   $s, $c conns: no profile"
        return
    fi
    # summary: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw (trailing zeros left out)
    sum=$(sed -n 's/^summary: *//p' "$f" | head -n 1)
    ir=$(echo "$sum" | cut -d' ' -f1)
    msgs=$(cg_writes "$f")
    [ "$msgs" -gt 0 ] || msgs=$marks
    per=$(awk -v a="$ir" -v m="$msgs" 'BEGIN { printf "%.0f", a / m }')
    put "ir.$s.$c" "$per"
    put "d1.$s.$c" "$(echo "$sum" | awk -v m="$msgs" '{ printf "%.2f", ($5 + $6) / m }')"
    {
        echo "## $s, $c connections: $ir instructions for $msgs messages (writes; client marks: $marks)"
        echo "self instructions and simulated D1 misses (read+write) per message, by function:"
        cg_self "$f" "$msgs" | head -n 25
        echo
    } >>"$OUT/profile-callgrind.txt"
    echo "   $s, $c conns: $per instructions/msg over $msgs msgs" >&2
}

# ---- pump -------------------------------------------------------------------------------
# The receiver KIND's program, backend (uring: pump_rill on that backend; empty is the
# default backend) and extra argument (lowat, blocklw: a 64 KiB read low water mark).
pump_exe() {
    case $1 in
    uring | lowat) echo "$B/pump_rill" ;;
    blocklw) echo "$B/pump_block" ;;
    *) echo "$B/pump_$1" ;;
    esac
}
pump_backend() { if [ "$1" = uring ]; then echo uring; fi; }
pump_arg() { case $1 in lowat | blocklw) echo 65536 ;; esac; }

run_pump() {
    recvs=""
    for r in block epoll rill uring uv lowat blocklw; do
        [ $r = uring ] && [ $HAVE_URING != 1 ] && continue
        [ -x "$(pump_exe $r)" ] && recvs="$recvs $r"
    done
    say "== pump: 2 GiB in 64 KiB writes into:$recvs; $PUMP_RUNS runs (order rotated each run)"
    r=1
    while [ $r -le "$PUMP_RUNS" ]; do
        for p in $(rotate $((r - 1)) $recvs); do
            next_port
            env RILL_BACKEND="$(pump_backend $p)" taskset -c $S_CPU "$(pump_exe $p)" $PORT \
                $(pump_arg $p) >"$TMP/recv" 2>>"$LOG" &
            rp=$!
            PIDS="$PIDS $rp"
            out=$(timeout 120 taskset -c $C_CPU "$B/pump_send" 127.0.0.1 $PORT $PUMP_BYTES 2>>"$LOG")
            wait $rp 2>/dev/null
            got=$(sed -n 's/^received=\([0-9]*\).*/\1/p' "$TMP/recv")
            mb=$(val "$out" mb_per_s)
            log "pump $p run=$r: $out received=$got"
            if [ -z "$mb" ] || [ "$got" != "$PUMP_BYTES" ]; then
                say "   $p run $r: FAILED (received ${got:-nothing})"
                continue
            fi
            put "pump.$p" "$mb"
            echo "   run $r $p: $mb MB/s" >&2
        done
        r=$((r + 1))
    done
    pump_syscalls $recvs
}

# One more pass of 512 MiB per receiver under perf's syscall tracepoints (strace when perf
# cannot): syscalls per 64 KiB received, which is what separates the receivers.
pump_syscalls() {
    bytes=536870912
    for p in "$@"; do
        next_port
        if [ "$have_perf" = 1 ]; then
            env RILL_BACKEND="$(pump_backend $p)" perf stat -x, -e raw_syscalls:sys_enter \
                -o "$TMP/psys" -- taskset -c $S_CPU "$(pump_exe $p)" $PORT $(pump_arg $p) \
                >/dev/null 2>>"$LOG" &
        else
            env RILL_BACKEND="$(pump_backend $p)" strace -f -c -o "$TMP/psys" \
                taskset -c $S_CPU "$(pump_exe $p)" $PORT $(pump_arg $p) >/dev/null 2>>"$LOG" &
        fi
        rp=$!
        PIDS="$PIDS $rp"
        timeout 120 taskset -c $C_CPU "$B/pump_send" 127.0.0.1 $PORT $bytes >/dev/null 2>>"$LOG"
        wait $rp 2>/dev/null
        if [ "$have_perf" = 1 ]; then
            n=$(awk -F, '$3 ~ /raw_syscalls/ { print $1 }' "$TMP/psys")
        else
            n=$(awk '$NF == "total" { print $4 }' "$TMP/psys")
        fi
        [ -n "$n" ] || continue
        per=$(awk -v n="$n" -v b=$bytes 'BEGIN { printf "%.2f", n / (b / 65536) }')
        put "pumpsys.$p" "$per"
        echo "   $p: $per syscalls per 64 KiB" >&2
    done
}

# ---- paired pump: rill's receiver and a peer's at the same time -------------------------------
run_pump_paired() {
    sides=""
    [ -x "$B/pump_rill" ] && sides=rill
    [ $HAVE_URING = 1 ] && [ -x "$B/pump_rill" ] && sides="$sides uring"
    [ -x "$B/pump_rill" ] && sides="$sides lowat"
    bytes=1073741824
    say "== paired pump: $sides with the blocking loop, the epoll receiver and libuv (lowat: both blocking loops) at once, 1 GiB each; $PUMP_PAIR_RUNS runs (which starts first alternates)"
    for side in $sides; do
        key=ppair
        peers="block epoll uv"
        [ $side = uring ] && key=ppairu
        [ $side = lowat ] && key=ppairl && peers="block blocklw"
        for peer in $peers; do
            [ -x "$(pump_exe $peer)" ] || continue
            r=1
            while [ $r -le "$PUMP_PAIR_RUNS" ]; do
                next_port
                pa=$PORT
                next_port
                pb=$PORT
                env RILL_BACKEND="$(pump_backend $side)" taskset -c $S_CPU "$(pump_exe $side)" $pa \
                    $(pump_arg $side) >"$TMP/ra" 2>>"$LOG" &
                ra=$!
                taskset -c $S_CPU "$(pump_exe $peer)" $pb $(pump_arg $peer) >"$TMP/rb" 2>>"$LOG" &
                rb=$!
                PIDS="$PIDS $ra $rb"
                sleep 0.2
                if [ $((r % 2)) = 1 ]; then first=$pa; second=$pb; else first=$pb; second=$pa; fi
                timeout 120 taskset -c $C_CPU "$B/pump_send" 127.0.0.1 $first $bytes \
                    >"$TMP/s$first" 2>>"$LOG" &
                sa=$!
                timeout 120 taskset -c $C_CPU "$B/pump_send" 127.0.0.1 $second $bytes \
                    >"$TMP/s$second" 2>>"$LOG" &
                sb=$!
                wait $sa
                wait $sb
                wait $ra 2>/dev/null
                wait $rb 2>/dev/null
                ga=$(sed -n 's/^received=\([0-9]*\).*/\1/p' "$TMP/ra")
                gb=$(sed -n 's/^received=\([0-9]*\).*/\1/p' "$TMP/rb")
                ca=$(val "$(cat "$TMP/ra")" cpu_ns)
                cb=$(val "$(cat "$TMP/rb")" cpu_ns)
                ma=$(val "$(cat "$TMP/s$pa")" mb_per_s)
                mb=$(val "$(cat "$TMP/s$pb")" mb_per_s)
                log "pumppair $side+$peer run=$r: $side received=$ga cpu_ns=$ca mb_per_s=$ma; $peer received=$gb cpu_ns=$cb mb_per_s=$mb"
                if [ "$ga" != $bytes ] || [ "$gb" != $bytes ] ||
                    ! put_ratios "$key.$peer" mbs "$ca" "$cb" "$ma" "$mb"; then
                    say "   $side+$peer run $r: FAILED (see $LOG)"
                    r=$((r + 1))
                    continue
                fi
                echo "   run $r $side+$peer: receiver CPU per byte $side/$peer $cr, MB/s $side/$peer $mr" >&2
                r=$((r + 1))
            done
        done
    done
}

# ---- idle memory ------------------------------------------------------------------------
rss_kb() { sed -n 's/^VmRSS:[^0-9]*\([0-9]*\).*/\1/p' "/proc/$1/status"; }

run_idle() {
    say "== idle: $IDLE_CONNS idle connections per server, VmRSS growth"
    for s in $SERVERS; do
        next_port
        start_server "$s" $PORT
        sleep 0.3
        before=$(rss_kb "$SPID")
        taskset -c $C_CPU "$B/idle" 127.0.0.1 $PORT $IDLE_CONNS >"$TMP/idle" 2>>"$LOG" &
        ip=$!
        PIDS="$PIDS $ip"
        i=0
        while [ $i -lt 600 ] && ! grep -q '^ready' "$TMP/idle"; do
            kill -0 $ip 2>/dev/null || break
            sleep 0.1
            i=$((i + 1))
        done
        if grep -q '^ready' "$TMP/idle"; then
            sleep 0.5
            after=$(rss_kb "$SPID")
            bpc=$(awk -v a="$after" -v b="$before" -v n=$IDLE_CONNS 'BEGIN { printf "%.0f", (a - b) * 1024 / n }')
            put "idle.$s" "$bpc"
            log "idle $s: VmRSS $before kB -> $after kB"
            echo "   $s: $before kB -> $after kB: $bpc bytes/connection" >&2
        else
            say "   $s: FAILED (the client never got ready)"
        fi
        stop_pid $ip
        stop_pid "$SPID"
        sleep 0.5 # let the sockets go
    done
}

# ---- timers and the other benchmark programs ----------------------------------------------
run_timers() {
    [ -x "$B/timers" ] || return
    say "== timers"
    taskset -c $S_CPU "$B/timers" >"$TMP/timers" 2>>"$LOG"
    cat "$TMP/timers" >>"$LOG"
    cat "$TMP/timers" >&2
    awk '{
        kind = $1; lib = ""; extra = ""
        for (i = 2; i <= NF; i++) {
            split($i, kv, "=")
            if (kv[1] == "lib") lib = kv[2]
            else if (kv[1] == "timeout") extra = "." kv[2]
        }
        for (i = 2; i <= NF; i++) {
            split($i, kv, "=")
            if (kv[1] ~ /_ns$|^ns$/) printf "tm.%s%s.%s.%s %s\n", kind, extra, kv[1], lib, kv[2]
        }
    }' "$TMP/timers" >>"$RAW"
}

run_others() {
    : >"$TMP/others"
    for p in framing pipe splice fiber_switch; do
        [ -x "$B/$p" ] || continue
        say "== $p"
        timeout 300 taskset -c $S_CPU,$C_CPU "$B/$p" >"$TMP/one" 2>>"$LOG"
        rc=$?
        [ $rc = 0 ] || echo "$p: exit status $rc" >>"$TMP/one"
        sed "s/^/$p: /" "$TMP/one" >>"$TMP/others"
        sed "s/^/   /" "$TMP/one" >&2
    done
}

# ---- report -------------------------------------------------------------------------------
report() {
    awk -v servers="$SERVERS" -v conns="$CONNS" -v cgconns="$CG_CONNS" -v secs="$SECS" -v runs="$RUNS" \
        -v gp="$TMP/plot.dat" -v gp2="$TMP/plot2.dat" -v gp3="$TMP/plot3.dat" -v gp4="$TMP/plot4.dat" '
    { v[$1] = v[$1] " " $2; n[$1]++ }
    function sorted(k, a,   m, i, j, t) {
        m = split(v[k], a, " ")
        for (i = 2; i <= m; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return m
    }
    function med(k,   a, m) {
        if (!(k in v)) return ""
        m = sorted(k, a)
        return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    }
    function lo(k,   a) { if (!(k in v)) return ""; sorted(k, a); return a[1] }
    function hi(k,   a, m) { if (!(k in v)) return ""; m = sorted(k, a); return a[m] }
    function fmt(x) {
        if (x == "") return "-"
        if (x >= 100) return sprintf("%.0f", x)
        if (x >= 10) return sprintf("%.1f", x)
        return sprintf("%.2f", x)
    }
    function pcell(k,   s) {
        if (!(k in v)) return "-"
        s = sprintf("%.3fx", med(k))
        if (n[k] > 1) s = s sprintf(" (%.3f-%.3f)", lo(k), hi(k))
        return s
    }
    function cell(k,   s) {
        if (!(k in v)) return "-"
        s = fmt(med(k))
        if (n[k] > 1) s = s " (" fmt(lo(k)) "-" fmt(hi(k)) ")"
        return s
    }
    # Median ratio; with several runs also the ratio of the best runs (the highest
    # throughput or the lowest cost: the runs least disturbed by other work).
    function ratio(a, b, higher,   x, y, s) {
        x = med(a); y = med(b)
        if (x == "" || y == "" || y == 0) return "-"
        s = sprintf("%.2fx", x / y)
        if (n[a] > 1 && n[b] > 1) {
            x = higher ? hi(a) : lo(a); y = higher ? hi(b) : lo(b)
            if (y > 0) s = s sprintf(" (best %.2fx)", x / y)
        }
        return s
    }
    function row(title, pre, post, lim, uv,   i, s, line, any, h) {
        for (i = 1; i <= ns; i++) if ((pre sv[i] post) in v) any = 1
        if (!any) return
        h = title ~ /higher better/
        line = "| " title
        for (i = 1; i <= ns; i++) line = line " | " cell(pre sv[i] post)
        line = line " | " ratio(pre "rill" post, pre lim post, h) " | " ratio(pre "rill" post, pre uv post, h) " |"
        if (hasu)
            line = line " " ratio(pre "uring" post, pre lim post, h) " | " ratio(pre "uring" post, pre uv post, h) " |"
        print line
    }
    END {
        ns = split(servers, sv, " ")
        name["rill"] = "rill"; name["epoll"] = "epoll (limit)"; name["uv"] = "libuv"
        name["event"] = "libevent"; name["fiber"] = "rill fibers"; name["uring"] = "rill on uring"
        hasu = (" " servers " ") ~ / uring /
        hdr = "| benchmark"; sep = "|---"
        for (i = 1; i <= ns; i++) { hdr = hdr " | " name[sv[i]]; sep = sep "|---:" }
        print hdr " | rill/epoll | rill/libuv |" (hasu ? " uring/epoll | uring/libuv |" : "")
        print sep "|---:|---:|" (hasu ? "---:|---:|" : "")
        nc = split(conns, cv, " ")
        for (j = 1; j <= nc; j++)
            row("ping-pong msgs/s, " cv[j] " conn (higher better)", "pp.", "." cv[j] ".mps", "epoll", "uv")
        for (j = 1; j <= nc; j++)
            row("server CPU ns/msg, " cv[j] " conn (lower better)", "pp.", "." cv[j] ".cpu", "epoll", "uv")
        if ("sys.rill.total" in v || "sys.epoll.total" in v)
            row("syscalls/msg @100, strace (lower better)", "sys.", ".total", "epoll", "uv")
        if ("psys.rill.total" in v || "psys.epoll.total" in v)
            row("syscalls/msg @100, perf (lower better)", "psys.", ".total", "epoll", "uv")
        ng = split(cgconns, gv, " ")
        for (j = 1; j <= ng; j++)
            row("instructions/msg @" gv[j] ", callgrind (lower better)", "ir.", "." gv[j], "epoll", "uv")
        for (j = 1; j <= ng; j++)
            row("D1 misses/msg @" gv[j] ", callgrind sim (lower better)", "d1.", "." gv[j], "epoll", "uv")
        if ("idle.rill" in v || "idle.epoll" in v)
            row("idle bytes/conn, 10k conns (lower better)", "idle.", "", "epoll", "uv")
        print ""
        if ("pair.epoll.100.cpu" in v || "pair.uv.100.cpu" in v || "pair.uv.1.cpu" in v) {
            print "| paired ping-pong: rill and the peer at the same time on the same CPUs; rill / peer, median of the runs (min-max) | vs epoll (limit) | vs libuv |"
            print "|---|---:|---:|"
            for (j = 1; j <= nc; j++)
                print "| server CPU ns/msg, " cv[j] " conn (lower better) | " pcell("pair.epoll." cv[j] ".cpu") \
                    " | " pcell("pair.uv." cv[j] ".cpu") " |"
            for (j = 1; j <= nc; j++)
                print "| msgs/s, " cv[j] " conn (higher better; the clients share a CPU) | " \
                    pcell("pair.epoll." cv[j] ".mps") " | " pcell("pair.uv." cv[j] ".mps") " |"
            for (j = 1; j <= nc; j++)
                if (("pairu.epoll." cv[j] ".cpu") in v || ("pairu.uv." cv[j] ".cpu") in v)
                    print "| rill on uring: server CPU ns/msg, " cv[j] " conn (lower better) | " \
                        pcell("pairu.epoll." cv[j] ".cpu") " | " pcell("pairu.uv." cv[j] ".cpu") " |"
            for (j = 1; j <= nc; j++)
                if (("pairu.epoll." cv[j] ".mps") in v || ("pairu.uv." cv[j] ".mps") in v)
                    print "| rill on uring: msgs/s, " cv[j] " conn (higher better) | " \
                        pcell("pairu.epoll." cv[j] ".mps") " | " pcell("pairu.uv." cv[j] ".mps") " |"
            print ""
        }
        if ("pump.block" in v || "pump.rill" in v) {
            print "| pump, 2 GiB, 64 KiB writes | rill | blocking read (limit) | epoll receiver | libuv | rill on uring | rill/limit | rill/epoll | rill/libuv | uring/limit |"
            print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            print "| MB/s (higher better) | " cell("pump.rill") " | " cell("pump.block") " | " cell("pump.epoll") \
                " | " cell("pump.uv") " | " cell("pump.uring") " | " ratio("pump.rill", "pump.block", 1) \
                " | " ratio("pump.rill", "pump.epoll", 1) " | " ratio("pump.rill", "pump.uv", 1) \
                " | " ratio("pump.uring", "pump.block", 1) " |"
            if ("pumpsys.rill" in v || "pumpsys.block" in v)
                print "| syscalls per 64 KiB (lower better) | " cell("pumpsys.rill") " | " cell("pumpsys.block") \
                    " | " cell("pumpsys.epoll") " | " cell("pumpsys.uv") " | " cell("pumpsys.uring") \
                    " | " ratio("pumpsys.rill", "pumpsys.block") " | " ratio("pumpsys.rill", "pumpsys.epoll") \
                    " | " ratio("pumpsys.rill", "pumpsys.uv") " | " ratio("pumpsys.uring", "pumpsys.block") " |"
            print ""
        }
        if ("pump.lowat" in v) {
            print "| pump with a 64 KiB read low water mark | rill, mark | blocking read, plain (limit) | blocking read, same SO_RCVLOWAT | rill, no mark | rill mark/limit | rill mark/blocking mark |"
            print "|---|---:|---:|---:|---:|---:|---:|"
            print "| MB/s (higher better) | " cell("pump.lowat") " | " cell("pump.block") " | " cell("pump.blocklw") \
                " | " cell("pump.rill") " | " ratio("pump.lowat", "pump.block", 1) " | " ratio("pump.lowat", "pump.blocklw", 1) " |"
            if ("pumpsys.lowat" in v)
                print "| syscalls per 64 KiB (lower better) | " cell("pumpsys.lowat") " | " cell("pumpsys.block") \
                    " | " cell("pumpsys.blocklw") " | " cell("pumpsys.rill") " | " ratio("pumpsys.lowat", "pumpsys.block") \
                    " | " ratio("pumpsys.lowat", "pumpsys.blocklw") " |"
            print ""
        }
        if ("ppair.block.cpu" in v || "ppair.uv.cpu" in v) {
            print "| paired pump: the rill receiver and the peer receiver at the same time, 1 GiB each; rill / peer, median (min-max) | vs blocking read (limit) | vs epoll receiver | vs libuv |"
            print "|---|---:|---:|---:|"
            print "| receiver CPU per byte (lower better) | " pcell("ppair.block.cpu") " | " pcell("ppair.epoll.cpu") \
                " | " pcell("ppair.uv.cpu") " |"
            print "| MB/s (higher better; the senders share a CPU) | " pcell("ppair.block.mbs") " | " \
                pcell("ppair.epoll.mbs") " | " pcell("ppair.uv.mbs") " |"
            if ("ppairu.block.cpu" in v || "ppairu.uv.cpu" in v) {
                print "| rill on uring: receiver CPU per byte (lower better) | " pcell("ppairu.block.cpu") " | " \
                    pcell("ppairu.epoll.cpu") " | " pcell("ppairu.uv.cpu") " |"
                print "| rill on uring: MB/s (higher better) | " pcell("ppairu.block.mbs") " | " \
                    pcell("ppairu.epoll.mbs") " | " pcell("ppairu.uv.mbs") " |"
            }
            print ""
        }
        if ("ppairl.block.cpu" in v || "ppairl.blocklw.cpu" in v) {
            print "| paired pump, rill with a 64 KiB read low water mark; rill / peer, median (min-max) | vs blocking read, plain (limit) | vs blocking read, same SO_RCVLOWAT |"
            print "|---|---:|---:|"
            print "| receiver CPU per byte (lower better) | " pcell("ppairl.block.cpu") " | " pcell("ppairl.blocklw.cpu") " |"
            print "| MB/s (higher better; the senders share a CPU) | " pcell("ppairl.block.mbs") " | " pcell("ppairl.blocklw.mbs") " |"
            print ""
        }
        nt = 0
        for (k in v) if (k ~ /^tm\./) nt++
        if (nt) {
            print "| timers (ns per operation, lower better) | rill | libuv | rill/libuv |"
            print "|---|---:|---:|---:|"
            tr("timer start, 1M timers", "tm.timer_start_stop.start_ns.")
            tr("timer stop, 1M timers", "tm.timer_start_stop.stop_ns.")
            tr("timer start+stop, 1M timers", "tm.timer_start_stop.pair_ns.")
            tr("re-arm a heap timer, 100k timers", "tm.timer_rearm.ns.")
            tr("write + timeout touch, per stream", "tm.activity.on.write_ns.")
            tr("write without timeout, per stream", "tm.activity.off.write_ns.")
            tr("timeout bookkeeping per activity (on - off)", "tm.activity_timeout_cost.ns.")
            print ""
        }
        # chart data: throughput relative to the limit, and server CPU per message
        for (j = 1; j <= nc; j++) {
            line = "\"" cv[j] " conn\""
            line2 = line
            for (i = 1; i <= ns; i++) {
                x = med("pp." sv[i] "." cv[j] ".mps"); y = med("pp.epoll." cv[j] ".mps")
                line = line " " (x != "" && y > 0 ? x / y : 0)
                c = med("pp." sv[i] "." cv[j] ".cpu")
                line2 = line2 " " (c != "" ? c / 1000 : 0)
            }
            print line > gp; print line2 > gp2
        }
        for (j = 1; j <= ng; j++) {
            line = "\"" gv[j] " conn\""; any = 0
            for (i = 1; i <= ns; i++) { c = med("ir." sv[i] "." gv[j]); line = line " " (c != "" ? c : "NaN"); if (c != "") any = 1 }
            if (any) print line > gp3
        }
        line = "\"10k idle conns\""; any = 0
        for (i = 1; i <= ns; i++) { c = med("idle." sv[i]); line = line " " (c != "" && c >= 1 ? c : 1); if (c != "") any = 1 }
        if (any) print line > gp4
        x = med("pump.rill"); y = med("pump.block"); u = med("pump.uv")
        if (y > 0) {
            line = "\"pump\""
            for (i = 1; i <= ns; i++) {
                if (sv[i] == "rill") line = line " " (x != "" ? x / y : 0)
                else if (sv[i] == "epoll") line = line " 1"
                else if (sv[i] == "uv") line = line " " (u != "" ? u / y : 0)
                else if (sv[i] == "uring") line = line " " (med("pump.uring") != "" ? med("pump.uring") / y : 0)
                else line = line " 0"
            }
            print line > gp
        }
    }
    function tr(title, k) {
        print "| " title " | " cell(k "rill") " | " cell(k "libuv") " | " ratio(k "rill", k "libuv", 0) " |"
    }' "$RAW"
}

plot() {
    command -v gnuplot >/dev/null 2>&1 || { say "gnuplot missing: no chart"; return; }
    [ -s "$TMP/plot.dat" ] || return
    last=$(($(echo $SERVERS | wc -w) + 1))
    panels=2
    [ -s "$TMP/plot3.dat" ] && panels=$((panels + 1))
    [ -s "$TMP/plot4.dat" ] && panels=$((panels + 1))
    rows=$(((panels + 1) / 2))
    {
        cat <<EOF
set terminal pngcairo size 1200,$((rows * 440 + 40)) font ",10"
set output '$OUT/latest.png'
set multiplot layout $rows,2 title "rill bench $(date -u +%Y-%m-%d): medians of $RUNS runs, ${SECS} s windows, server and client on separate CPUs"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top left
set yrange [0:*]
set title "throughput relative to the limit (epoll; pump: blocking read)"
set ylabel "ratio (higher is better)"
plot '$TMP/plot.dat' using 2:xtic(1) title columnhead(2) noenhanced, \
     for [i=3:$last] '' using i title columnhead(i) noenhanced
set title "server CPU per message (ping-pong; user + kernel)"
set ylabel "microseconds (lower is better)"
plot '$TMP/plot2.dat' using 2:xtic(1) title columnhead(2) noenhanced, \
     for [i=3:$last] '' using i title columnhead(i) noenhanced
set logscale y
set yrange [1:*]
EOF
        [ -s "$TMP/plot3.dat" ] && cat <<EOF
set title "user-space instructions per message (callgrind)"
set ylabel "instructions, log scale (lower is better)"
plot '$TMP/plot3.dat' using 2:xtic(1) title columnhead(2) noenhanced, \
     for [i=3:$last] '' using i title columnhead(i) noenhanced
EOF
        [ -s "$TMP/plot4.dat" ] && cat <<EOF
set title "server memory per idle connection (VmRSS growth; 0 is drawn as 1)"
set ylabel "bytes, log scale (lower is better)"
plot '$TMP/plot4.dat' using 2:xtic(1) title columnhead(2) noenhanced, \
     for [i=3:$last] '' using i title columnhead(i) noenhanced
EOF
        echo "unset multiplot"
    } | gnuplot >>"$LOG" 2>&1
}

# Column heads for gnuplot's columnhead(): a header line naming each server.
plot_headers() {
    h="x"
    for s in $SERVERS; do
        case $s in
        rill) t=rill ;; epoll) t=epoll-limit ;; uv) t=libuv ;; event) t=libevent ;; *) t=rill-$s ;;
        esac
        h="$h $t"
    done
    for f in "$TMP/plot.dat" "$TMP/plot2.dat" "$TMP/plot3.dat" "$TMP/plot4.dat"; do
        [ -f "$f" ] && { echo "$h"; cat "$f"; } >"$f.h" && mv "$f.h" "$f"
    done
}

# ---- main ---------------------------------------------------------------------------------
t_start=$(now)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
awk -v l="${load_start%% *}" 'BEGIN { exit !(l + 0 > 1.0) }' &&
    say "warning: load average $load_start before the run: other work shares these CPUs; expect noise"
wants pingpong && run_pingpong
wants paired && run_paired
if [ "$PROFILE" = 1 ]; then
    wants syscalls && run_syscalls
    wants callgrind && run_callgrind
fi
wants pump && run_pump
wants pumppair && run_pump_paired
wants idle && run_idle
wants timers && run_timers
wants others && run_others

table=$(report)
plot_headers
plot
elapsed=$(($(now) - t_start))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
cp "$RAW" "$OUT/latest.raw"
{
    echo "# rill bench - $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    dirty=$(git -C "$HERE/.." status --porcelain -- src include 2>/dev/null | wc -l)
    echo "Commit $(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo '?')" \
        "(plus $dirty uncommitted files under src/ and include/ at the time); $(nproc) CPUs" \
        "($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)); servers on CPU $S_CPU," \
        "clients on CPU $C_CPU; ping-pong: $SIZE-byte messages, $RUNS interleaved runs per cell (servers driven in turn in ${SLICE_MS} ms slices, 0 = one at a time; first server rotated each run)," \
        "1 s warm-up + ${SECS} s window; pump: $PUMP_RUNS runs per receiver, $PUMP_PAIR_RUNS paired runs" \
        "per pair; median (min-max).  Ratios compare medians; for costs" \
        "(CPU, syscalls, instructions, bytes, ns) lower is better.  Whole run: ${elapsed} s;" \
        "load average before: $load_start, after: $load_end (above ~1 means other work shared" \
        "the CPUs and the timings are noisier than usual; syscall and instruction counts are not" \
        "affected)."
    echo
    echo "$table"
    if [ -s "$TMP/others" ]; then
        echo
        echo "Other benchmarks, as printed:"
        echo
        echo '```'
        cat "$TMP/others"
        echo '```'
    fi
    if grep -q '^sys\.' "$RAW"; then
        echo
        echo "Syscalls per message by call (strace -c -f, 100 connections):"
        echo
        echo '```'
        grep '^sys\.' "$RAW" | grep -v '\.total ' | sed 's/^sys\.//' | sort
        echo '```'
    fi
    echo
    echo "![chart](latest.png)"
} >"$OUT/latest.md"
echo
echo "$table"
[ -s "$TMP/others" ] && { echo; cat "$TMP/others"; }
echo
echo "wrote $OUT/latest.md, $OUT/latest.png, $OUT/latest.raw (log: $OUT/latest.log; ${elapsed} s)"
