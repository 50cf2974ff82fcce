#!/bin/sh
# tools/count.sh BUILDDIR - prints "N passed, N failed" counting test cases (cmocka's
# per-case lines in meson's test log); a case that started and never ended failed.
log="$1/meson-logs/testlog.txt"
[ -f "$log" ] || { echo "0 passed, 1 failed"; exit 1; }
run=$(grep -c '^\[ RUN      \]' "$log")
ok=$(grep -c '^\[       OK \]' "$log")
skip=$(grep -c '^\[  SKIPPED \]' "$log")
# Executables that died before running any case count as one failure each.
dead=$(grep -E '^result: ' "$log" | grep -vc 'exit status 0$')
failed=$((run - ok - skip))
[ "$failed" -lt "$dead" ] && failed=$dead
echo "$ok passed, $failed failed"
