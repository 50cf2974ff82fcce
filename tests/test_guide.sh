#!/usr/bin/env bash
# tests/test_guide.sh - every ```c block of docs/guide.md is a whole program: each one must
# compile without warnings and link against the library just built (one case per block).
set -u
B="${RILL_TEST_BUILDDIR:?}"
S="${RILL_TEST_SRCDIR:?}"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
failed=0

lib="$B/librill.a"
[ -f "$lib" ] || lib=$(find "$B" -maxdepth 2 -name 'librill.a' -print -quit)
libs="-lpcre2-8"
san="" # a sanitizer build's library needs the same runtime
syms=$(nm "$lib" 2>/dev/null | grep -oE '__(a|ub|t)san_' | sort -u)
for kind in asan:address ubsan:undefined tsan:thread; do
    echo "$syms" | grep -q "__${kind%%:*}_" && san="$san,${kind#*:}"
done
[ -n "$san" ] && san="-fsanitize=${san#,}"
for dep in liburing openssl; do # optional in the build: link them when they are there
    pkg-config --exists "$dep" 2>/dev/null && libs="$libs $(pkg-config --libs "$dep")"
done

# Writes block N (numbered from 1) to $T/block_N.c and its first line number to
# $T/block_N.line; prints how many blocks there are.
awk -v dir="$T" '
    /^```c$/ { n++; inside = 1; print NR + 1 > (dir "/block_" n ".line"); next }
    /^```/ && inside { inside = 0; close(dir "/block_" n ".c"); next }
    inside { print > (dir "/block_" n ".c") }
    END { print n + 0 }' "$S/docs/guide.md" >"$T/count"
count=$(cat "$T/count")

echo "[ RUN      ] guide_has_examples"
if [ "$count" -ge 5 ] && grep -q '(fibers.md)' "$S/docs/guide.md"; then
    echo "[       OK ] guide_has_examples"
else
    echo "[  FAILED  ] guide_has_examples ($count blocks; the link to fibers.md is expected)"
    failed=$((failed + 1))
fi

for i in $(seq 1 "$count"); do
    name="guide_block_$i"
    echo "[ RUN      ] $name"
    # shellcheck disable=SC2086
    if cc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror $san -I"$S/include" \
        "$T/block_$i.c" "$lib" $libs -lpthread -o "$T/block_$i" >"$T/$name.log" 2>&1; then
        echo "[       OK ] $name"
    else
        echo "[  FAILED  ] $name (docs/guide.md line $(cat "$T/block_$i.line"))"
        sed 's/^/    /' "$T/$name.log"
        failed=$((failed + 1))
    fi
done
exit $((failed > 0))
