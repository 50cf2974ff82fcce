#!/usr/bin/env bash
# tests/test_install.sh - `meson install --destdir` puts the library, headers and rill.pc in
# place, and a program outside the tree builds with pkg-config and runs against it.
set -u
b="${RILL_TEST_BUILDDIR:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
run() { # name command...
    local name=$1; shift
    echo "[ RUN      ] $name"
    if "$@" >"$tmp/$name.log" 2>&1; then echo "[       OK ] $name"
    else echo "[  FAILED  ] $name"; cat "$tmp/$name.log"; fail=1; fi
}

install_tree() {
    meson install -C "$b" --destdir "$tmp/root" --no-rebuild --quiet
    local libdir; libdir=$(find "$tmp/root" -name 'librill.so.0' -print -quit)
    [ -n "$libdir" ] && [ -f "$(dirname "$libdir")/librill.a" ] &&
        [ -f "$(find "$tmp/root" -path '*include/rill.h' -print -quit)" ] &&
        [ -f "$(find "$tmp/root" -path '*include/rill/stream.h' -print -quit)" ] &&
        objdump -p "$libdir" | grep -q 'SONAME *librill.so.0'
}

outside_program() {
    local pc; pc=$(dirname "$(find "$tmp/root" -name rill.pc -print -quit)")
    cat >"$tmp/hello.c" <<'C'
#include <rill.h>
#include <stdio.h>
#include <string.h>
static int fired;
static void tick(rill_timer *t, void *arg) { (void)t; (void)arg; fired++; }
int main(void)
{
    rill_loop *loop = rill_loop_new(NULL);
    if (!loop || !rill_timer_start(loop, 1, 0, tick, NULL))
        return 1;
    rill_loop_run(loop, RILL_RUN_DEFAULT);
    printf("%s %d %s\n", rill_version(), fired, rill_err_name(RILL_ECONNRESET));
    return rill_loop_free(loop) != 0 || fired != 1;
}
C
    export PKG_CONFIG_PATH="$pc"
    # The .pc file was installed under a destdir: point its prefix there (PREFIX/lib/...).
    local flags; flags=$(pkg-config --define-variable=prefix="${pc%%/lib/*}" --cflags --libs rill) ||
        return 1
    cc -std=c11 -Wall -Wextra -Werror "$tmp/hello.c" -o "$tmp/hello" $flags || return 1
    local libdir; libdir=$(dirname "$(find "$tmp/root" -name 'librill.so.0' -print -quit)")
    LD_LIBRARY_PATH="$libdir" "$tmp/hello" | grep -qx "0.1.0 1 ECONNRESET"
}

run install_tree install_tree
run pkg_config_program outside_program
exit $fail
