#!/usr/bin/env bash
# Time from `bazaar up` to its first 200, with a cold compile cache (every
# component compiled by Cranelift) and a warm one (deserialised from the
# cache), for the hello app and, unless --hello-only, the whole shop in
# embedded mode. Each start gets a fresh state directory, so only the
# compile cache differs between cold and warm. The median of --runs starts
# is reported.
#
#   scripts/bench/startup.sh --bazaar BIN --first-200 BIN [--runs 3] [--hello-only] [--out FILE.md]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUNS=3
HELLO_ONLY=0
OUT="$ROOT/target/bench/startup.md"
BAZAAR="" FIRST_200=""
while [ $# -gt 0 ]; do
    case "$1" in
        --bazaar) BAZAAR=$2; shift ;;
        --first-200) FIRST_200=$2; shift ;;
        --runs) RUNS=$2; shift ;;
        --out) OUT=$2; shift ;;
        --hello-only) HELLO_ONLY=1 ;;
        *) echo "startup.sh: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$BAZAAR" ] && [ -n "$FIRST_200" ] || { echo "startup.sh: --bazaar BIN and --first-200 BIN are needed" >&2; exit 2; }

PORT=${BENCH_PORT_BASE:-17310}
PORT=$((PORT + 5))
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# One start: prints the milliseconds to the first 200 on $path.
# $1 app (hello|shop), $2 compile cache dir.
one() {
    local app=$1 cache=$2 state manifest path
    state=$(mktemp -d -p "$WORK")
    local extra=()
    case "$app" in
        hello) manifest="$ROOT/scripts/bench/hello/spin.toml"; path=/ ;;
        shop)
            manifest="$ROOT/spin.toml"
            # A catalog read goes through the gateway to the products service.
            path=/api/products
            sed "s|path = \"\.bazaar/|path = \"$state/|" "$ROOT/runtime-config/embedded.toml" >"$state/embedded.toml"
            extra=(--runtime-config-file "$state/embedded.toml")
            ;;
    esac
    "$FIRST_200" "http://127.0.0.1:$PORT$path" -- "$BAZAAR" up --from "$manifest" --listen "127.0.0.1:$PORT" \
        --admin-listen off --state-dir "$state" --cache-dir "$cache" "${extra[@]}" 2>"$state/log" || {
        echo "startup.sh: bazaar up ($app) gave no 200; its output:" >&2
        cat "$state/log" >&2
        exit 1
    }
}

median() { sort -n | awk '{ a[NR] = $1 } END { print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

apps=(hello)
[ $HELLO_ONLY = 1 ] || apps+=(shop)
mkdir -p "$(dirname "$OUT")"
{
    echo "| app | compile cache | ms to first 200 (median of $RUNS) |"
    echo "| --- | --- | ---: |"
} >"$OUT"
for app in "${apps[@]}"; do
    cold=() warm=()
    for i in $(seq 1 "$RUNS"); do
        cache=$(mktemp -d -p "$WORK")
        cold+=("$(one "$app" "$cache")")
        warm+=("$(one "$app" "$cache")")
        echo "startup.sh: $app start $i/$RUNS: cold ${cold[-1]} ms, warm ${warm[-1]} ms" >&2
    done
    label=$([ "$app" = hello ] && echo "hello (1 component)" || echo "shop, embedded (7 components)")
    echo "| $label | cold (compiled) | $(printf '%s\n' "${cold[@]}" | median) |" >>"$OUT"
    echo "| $label | warm (from the cache) | $(printf '%s\n' "${warm[@]}" | median) |" >>"$OUT"
done
cat "$OUT"
