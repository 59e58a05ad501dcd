#!/usr/bin/env bash
# `make bench` / `make bench-quick`: builds what the benchmarks need,
# installs the outside tools (scripts/bench/tools.sh), runs
#   1. hello world, interleaved: bazaar up / wasmtime serve (defaults, tuned)
#      / native hyper, at 1, 16 and 64 connections (scripts/bench/hello.sh);
#   2. time from `bazaar up` to the first 200, cold and warm compile cache
#      (scripts/bench/startup.sh);
#   3. the shop under the customer mix, with the consistency check after
#      each run (host/benches/shop_mix);
# prints the tables and writes them to BENCHMARKS.md.
#
#   scripts/bench/bench.sh            full run (about 15 minutes once built)
#   scripts/bench/bench.sh --quick    short runs, embedded shop at 16 clients only (under 3 minutes once built)
#
# The first run also compiles wasmtime-cli (10 to 30 minutes on 2 cores,
# cached in ~/.cache/bazaar-bench). Production mode needs Postgres and
# Redis on 127.0.0.1 (as the tests do).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# shellcheck source=tools.sh
source "$ROOT/scripts/bench/tools.sh"

QUICK=0
case "${1:-}" in
    --quick) QUICK=1 ;;
    "") ;;
    *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac
if [ $QUICK = 1 ]; then
    HELLO=(--duration 4s --rounds 1)
    STARTUP=(--runs 1 --hello-only)
    SHOP=(--duration 10s --warmup 3s --clients 16 --modes embedded --max-concurrent-requests off)
    COMMAND="make bench-quick"
else
    HELLO=(--duration 10s --rounds 3)
    STARTUP=(--runs 3)
    SHOP=(--duration 30s --warmup 5s --clients 16,64 --modes embedded,production)
    COMMAND="make bench"
fi
OUT="$ROOT/target/bench"
mkdir -p "$OUT"

# 1. Tools and builds. wasmtime-cli compiles in the background meanwhile.
start_wasmtime_install
LOADGEN=$(ensure_loadgen)
echo "bench: building the wasm components, the release host and the bench tools" >&2
make --no-print-directory wasm CARGO="$CARGO"
# One cargo command builds the host in release (<target dir>/release/bazaar, the
# bench profile is the release profile) and the bench tools. A separate
# `cargo build --release -p bazaar` would rebuild every dependency a second
# time: without the dev-dependencies, cargo resolves other features.
# The bench targets' executables, from cargo's own build messages.
executables=$("$CARGO" bench -p bazaar --no-run --message-format=json \
    --bench native_hello --bench first_200 --bench shop_mix |
    jq -r 'select(.reason == "compiler-artifact" and .executable != null) | "\(.target.name) \(.executable)"')
exe() { echo "$executables" | awk -v n="$1" '$1 == n { print $2 }'; }
NATIVE=$(exe native_hello) FIRST_200=$(exe first_200) SHOP_MIX=$(exe shop_mix)
BAZAAR="${CARGO_TARGET_DIR:-$ROOT/target}/release/bazaar"
wait_wasmtime
WASMTIME=$(wasmtime_bin)

# 2. The runs.
started=$(date +%s)
scripts/bench/hello.sh --bazaar "$BAZAAR" --native "$NATIVE" --wasmtime "$WASMTIME" --loadgen "$LOADGEN" \
    --out "$OUT/hello.md" "${HELLO[@]}"
scripts/bench/startup.sh --bazaar "$BAZAAR" --first-200 "$FIRST_200" --out "$OUT/startup.md" "${STARTUP[@]}"
# shop_mix prints markdown on stdout and its progress on stderr; the
# consistency checker's verdict is in the markdown.
"$SHOP_MIX" "${SHOP[@]}" | tee "$OUT/shop.md"
elapsed=$(($(date +%s) - started))

# 3. BENCHMARKS.md.
# (`wrk --version` exits with 1.)
loadgen_version=$(if [ "$LOADGEN" = wrk ]; then { wrk --version 2>&1 || true; } | awk 'NR == 1 { print "wrk " $2 }'; else "${LOADGEN#oha:}" --version; fi)
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
{
    cat <<EOF
# Benchmarks

Measured by \`$COMMAND\` ($([ $QUICK = 1 ] && echo "quick run: short durations, one round, embedded shop at 16 clients only" || echo "full run")) on $(date -u '+%Y-%m-%d %H:%M UTC'), in $((elapsed / 60)) min $((elapsed % 60)) s after building.

- Machine: $(nproc) cores ($cpu), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)
- wasmtime $(wasmtime_version) (bazaar's dependency and \`wasmtime serve\`, $("$WASMTIME" --version)); load generator $loadgen_version, on the same machine
- Reproduce: \`$COMMAND\` (full: \`make bench\`; quick: \`make bench-quick\`; the script is scripts/bench/bench.sh)

**Read the ratios, not the absolute figures.** These are shared 2-core
machines: other engineers' builds and tests run beside the benchmark, and
the load generator itself takes one of the two cores. Absolute req/s move
by tens of percent from one minute to the next. That is why the servers
take turns within one run (interleaved, the order rotating each round) and
the ratios are taken round by round.

## Hello world: one fresh instance per request

The spin-sdk 5.2 hello component (tests/components/hello) under \`bazaar up\`
(release build), under \`wasmtime serve\`, and a native hyper 1 server
answering the same bytes (host/benches/native_hello.rs). Keep-alive
connections; req/s, p50 and p99 are medians over the rounds.

$(cat "$OUT/hello.md")

## Start-up: \`bazaar up\` to the first 200

$(cat "$OUT/startup.md")

$(cat "$OUT/shop.md")

$(cat "$ROOT/scripts/bench/where-we-stand.md")
EOF
} >"$ROOT/BENCHMARKS.md"
echo "bench: wrote BENCHMARKS.md" >&2
