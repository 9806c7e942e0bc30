#!/usr/bin/env bash
# Build the libFuzzer targets with clang (-fsanitize=fuzzer,address,undefined)
# straight from the project sources and run each for a while.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 60); TARGETs among config cidr sanitize chat http
# proxy url wire (default: all). Seeds come from tests/fuzz/corpus/<target>/ (committed) and
# are copied to a working corpus under FUZZ_DIR (default build-fuzz/), so the
# committed seeds never change. Exits 1 when a target crashes, leaks, hangs
# or fails an oracle, and prints the input that did it (reproduce with
# FUZZ_DIR/fuzz-<target> FILE). Exits 0 with a "skip:" line when clang or
# libFuzzer is missing (Debian: clang, libclang-rt-14-dev), and skips a
# target whose sources are not in the tree yet.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config cidr sanitize chat http proxy url wire)
out=${FUZZ_DIR:-$root/build-fuzz}
cc=${CC_FUZZ:-clang}

case $seconds in
'' | *[!0-9]*)
	echo "usage: $0 [SECONDS] [TARGET...]" >&2
	exit 64
	;;
esac

for t in "${targets[@]}"; do
	case $t in
	config | cidr | sanitize | chat | http | proxy | url | wire) ;;
	*)
		echo "fuzz: unknown target '$t' (config cidr sanitize chat http proxy url wire)" >&2
		exit 64
		;;
	esac
done

skip() {
	echo "skip: $*"
	exit 0
}

command -v "$cc" >/dev/null 2>&1 || skip "no $cc (Debian: apt-get install clang libclang-rt-14-dev)"
mkdir -p "$out" || exit 1
probe="$out/probe.c"
cat >"$probe" <<'EOF'
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }
EOF
if ! "$cc" -fsanitize=fuzzer,address,undefined "$probe" -o "$out/probe" 2>"$out/probe.log"; then
	sed 's/^/  /' "$out/probe.log"
	skip "$cc cannot build a libFuzzer target (Debian: apt-get install libclang-rt-14-dev)"
fi
rm -f "$probe" "$out/probe" "$out/probe.log"

# Sources (under src/) each target links, besides its own file (file_of).
sources_of() {
	case $1 in
	config) echo "config.c cidr.c backend-url.c base/util.c" ;;
	cidr) echo "cidr.c base/util.c" ;;
	sanitize) echo "sanitize.c" ;;
	# chat-room.c starts a Redis backend when a room has one (the fuzzed
	# rooms have none): the backend and what it runs on link, unused.
	chat) echo "chat-proto.c chat-room.c chat-udp.c linebuf.c sanitize.c base/util.c" \
		"chat-backend.c chat-wire.c backend-url.c redis-loop.c loop.c loop-select.c" \
		"loop-poll.c loop-epoll.c log.c sdproto.c config.c cidr.c" ;;
	http) echo "httpreq.c" ;;
	proxy) echo "proxyproto.c" ;;
	url) echo "backend-url.c base/util.c" ;;
	wire) echo "chat-wire.c chat-proto.c sanitize.c base/util.c" ;;
	*) return 1 ;;
	esac
}

# The target's own file under tests/fuzz/: fuzz-<target>.c, but for the
# modules of the Redis backend, named after the module.
file_of() {
	case $1 in
	url) echo "fuzz-backend-url.c" ;;
	wire) echo "fuzz-chat-wire.c" ;;
	*) echo "fuzz-$1.c" ;;
	esac
}

# libFuzzer flags of a target. config: libconfig 1.5 leaks on many syntax
# errors (lsan.supp), and every suppressed leak costs libFuzzer a full leak
# scan, 60 times slower; so it fuzzes without leak checks and then replays
# its whole corpus once with them (replay_of).
flags_of() {
	case $1 in
	config) echo "-detect_leaks=0" ;;
	*) echo "" ;;
	esac
}

replay_of() {
	case $1 in
	config) return 0 ;;
	*) return 1 ;;
	esac
}

libs_of() {
	case $1 in
	config) pkg-config --libs libconfig 2>/dev/null || echo "-lconfig" ;;
	chat) echo "-lpthread $(pkg-config --libs hiredis 2>/dev/null || echo -lhiredis) $(pkg-config --libs libconfig 2>/dev/null || echo -lconfig)" ;;
	*) echo "" ;;
	esac
}

cflags=(-std=gnu11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
	-I"$root/src" -I"$root/src/base" -I"$here" -Wall -Wno-unused-parameter)
for pc in libconfig hiredis; do
	if pkg-config --exists "$pc" 2>/dev/null; then
		read -r -a extra <<<"$(pkg-config --cflags "$pc")"
		cflags+=("${extra[@]}")
	fi
done

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$here/lsan.supp:print_suppressions=0}

failed=()
ran=0
for t in "${targets[@]}"; do
	srcs=$(sources_of "$t")
	files=("$here/$(file_of "$t")")
	missing=""
	for s in $srcs; do
		[ -f "$root/src/$s" ] || missing+=" src/$s"
		files+=("$root/src/$s")
	done
	if [ -n "$missing" ]; then
		echo "fuzz-$t: skipped, not in the tree yet:$missing"
		continue
	fi

	bin="$out/fuzz-$t"
	read -r -a libs <<<"$(libs_of "$t")"
	echo "==== fuzz-$t: build"
	if ! "$cc" "${cflags[@]}" "${files[@]}" "${libs[@]}" -o "$bin" 2>"$out/fuzz-$t.build.log"; then
		cat "$out/fuzz-$t.build.log" >&2
		echo "fuzz-$t: BUILD FAILED" >&2
		failed+=("$t (build)")
		continue
	fi

	corpus="$out/corpus/$t"
	artifacts="$out/artifacts/$t"
	mkdir -p "$corpus" "$artifacts"
	[ -d "$here/corpus/$t" ] && cp -n "$here/corpus/$t"/* "$corpus"/ 2>/dev/null
	rm -f "$artifacts"/*
	echo "==== fuzz-$t: ${seconds}s on $(find "$corpus" -type f | wc -l) inputs"
	read -r -a tflags <<<"$(flags_of "$t")"
	"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
		-print_final_stats=1 "${tflags[@]}" -artifact_prefix="$artifacts/" "$corpus" \
		>"$out/fuzz-$t.log" 2>&1
	rc=$?
	if [ $rc -eq 0 ] && replay_of "$t"; then
		echo "==== fuzz-$t: replaying $(find "$corpus" -type f | wc -l) inputs with leak checks"
		"$bin" -runs=0 -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$artifacts/" \
			"$corpus" >>"$out/fuzz-$t.log" 2>&1
		rc=$?
	fi
	ran=$((ran + 1))
	grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)' "$out/fuzz-$t.log" |
		sed "s/^/fuzz-$t: /"
	if [ $rc -ne 0 ]; then
		tail -n 60 "$out/fuzz-$t.log" >&2
		for f in "$artifacts"/*; do
			[ -e "$f" ] && echo "fuzz-$t: FAILED (exit $rc) on input $f; reproduce: $bin $f" >&2
		done
		failed+=("$t")
	else
		echo "fuzz-$t: ok"
	fi
done

if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: FAILED: ${failed[*]} (logs in $out)" >&2
	exit 1
fi
echo "fuzz: $ran target(s) ran without a finding"
exit 0
