# rill - the two set-up commands (make check, make demo) and the sanitizer / bench targets.
# Everything below installs what is missing from Debian's packages first.
PKGS := meson ninja-build pkg-config libcmocka-dev libpcre2-dev liburing-dev libssl-dev \
        valgrind socat python3
BENCH_PKGS := libuv1-dev libevent-dev gnuplot-nox strace
MESON_TEST := meson test --print-errorlogs --num-processes 2
# The uring backend's tests exist only where liburing is (expanded at use, after deps).
ASAN_URING = $(shell pkg-config --exists liburing 2>/dev/null && echo --suite uring)
# The tests whose subject is threads (posts, the pool, refcounts, the pipe, cancellation).
TSAN_TESTS := loop-epoll pool-epoll bytes pipe pipe_random bufwrap cancel-epoll pipe_stream-epoll

.PHONY: all deps check check-asan check-tsan check-valgrind demo bench clean

all: build/build.ninja
	ninja -C build -j2

deps:
	@sh tools/deps.sh $(PKGS)

build/build.ninja: deps meson.build meson_options.txt
	@if [ -d build ]; then meson setup --reconfigure build >/dev/null; else meson setup build; fi

check: deps
	@if [ -d build ]; then meson setup --reconfigure build >/dev/null; else meson setup build; fi
	ninja -C build -j2
	@$(MESON_TEST) -C build; rc=$$?; sh tools/count.sh build; exit $$rc

check-asan: deps
	@if [ -d build-asan ]; then meson setup --reconfigure build-asan >/dev/null; else \
	  meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false \
	    -Dc_args=-fno-sanitize-recover=all -Dbuildtype=debug; fi
	ninja -C build-asan -j2
	@$(MESON_TEST) -C build-asan --suite epoll --suite poll $(ASAN_URING) --suite core; rc=$$?; \
	  sh tools/count.sh build-asan; exit $$rc

check-tsan: deps
	@if [ -d build-tsan ]; then meson setup --reconfigure build-tsan >/dev/null; else \
	  meson setup build-tsan -Db_sanitize=thread -Db_lundef=false -Dbuildtype=debug; fi
	ninja -C build-tsan -j2
	@TSAN_OPTIONS=halt_on_error=1 $(MESON_TEST) -C build-tsan $(TSAN_TESTS); rc=$$?; \
	  sh tools/count.sh build-tsan; exit $$rc

check-valgrind: deps
	@if [ -d build ]; then meson setup --reconfigure build >/dev/null; else meson setup build; fi
	ninja -C build -j2
	@RILL_VALGRIND=1 $(MESON_TEST) -C build --suite epoll --suite core --timeout-multiplier 4 \
	  --wrap='valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect --quiet'; \
	  rc=$$?; sh tools/count.sh build; exit $$rc

demo: deps
	@if [ -d build ]; then meson setup --reconfigure build >/dev/null; else meson setup build; fi
	@ninja -C build -j2 >/dev/null
	@sh tools/demo.sh build

bench:
	@sh tools/deps.sh $(PKGS) $(BENCH_PKGS)
	@if [ -d build-bench ]; then meson setup --reconfigure build-bench >/dev/null; else \
	  meson setup build-bench -Dbuildtype=release -Db_ndebug=true -Dbench=true; fi
	ninja -C build-bench -j2
	@sh bench/run.sh build-bench

clean:
	rm -rf build build-asan build-tsan build-bench
