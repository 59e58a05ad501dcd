#!/usr/bin/env bash
# Hello world side by side, interleaved in one run: the spin-sdk hello
# component (tests/components/hello) under `bazaar up`, under `wasmtime
# serve` with its defaults and tuned, and a native hyper server
# (host/benches/native_hello.rs), at each number of connections.
#
# The machine is shared and noisy, so the servers take turns: for each
# round, for each connection count, each server gets DURATION of load, the
# order rotating from round to round. Figures are medians over the rounds;
# the ratios are taken round by round (same minute, same noise) and their
# median is reported.
#
# Usage (bench.sh passes everything; run alone for experiments):
#   scripts/bench/hello.sh --bazaar BIN --native BIN --wasmtime BIN --loadgen wrk|oha:PATH \
#       [--duration 10s] [--rounds 3] [--conns "1 16 64"] [--servers "bazaar wasmtime wasmtime-tuned native"] \
#       [--out FILE.md] [--bazaar-args "..."]
# Writes the markdown table to --out (default target/bench/hello.md) and
# the raw figures next to it (hello.tsv).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=10s
ROUNDS=3
CONNS="1 16 64"
SERVERS="bazaar wasmtime wasmtime-tuned native"
OUT="$ROOT/target/bench/hello.md"
BAZAAR="" NATIVE="" WASMTIME="" LOADGEN="wrk" BAZAAR_ARGS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2 ;;
        --rounds) ROUNDS=$2 ;;
        --conns) CONNS=$2 ;;
        --servers) SERVERS=$2 ;;
        --out) OUT=$2 ;;
        --bazaar) BAZAAR=$2 ;;
        --native) NATIVE=$2 ;;
        --wasmtime) WASMTIME=$2 ;;
        --loadgen) LOADGEN=$2 ;;
        --bazaar-args) BAZAAR_ARGS=$2 ;;
        *) echo "hello.sh: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
    esac
    shift 2
done

WASM="$ROOT/target/wasm32-wasip2/release/hello.wasm"
[ -f "$WASM" ] || { echo "hello.sh: $WASM is missing: cargo build --target wasm32-wasip2 --release -p hello" >&2; exit 1; }

# `wasmtime serve` as the issue measured it, and tuned with the settings
# bazaar's engine uses (host/src/engine.rs): linear memories, tables and
# async stacks kept resident between instances, memory reset through the
# PAGEMAP_SCAN ioctl (only the pages the instance dirtied).
WASMTIME_DEFAULT="-S cli=y -O pooling-allocator"
WASMTIME_TUNED="-S cli=y -O pooling-allocator,pooling-memory-keep-resident=16777216,pooling-table-keep-resident=65536,pooling-async-stack-keep-resident=1048576,pooling-pagemap-scan=y"

# Ports under the ephemeral range, so they do not collide with the free
# ports the tests running beside us pick.
PORT_BASE=${BENCH_PORT_BASE:-17310}
declare -A PORT=([bazaar]=$PORT_BASE [wasmtime]=$((PORT_BASE + 1)) [wasmtime-tuned]=$((PORT_BASE + 2)) [native]=$((PORT_BASE + 3)))
ADMIN_PORT=$((PORT_BASE + 4))

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

start() {
    local name=$1 port=${PORT[$1]}
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "hello.sh: port $port is taken; set BENCH_PORT_BASE to a free range" >&2
        exit 1
    fi
    case "$name" in
        bazaar)
            [ -n "$BAZAAR" ] || { echo "hello.sh: --bazaar BIN is needed" >&2; exit 2; }
            # shellcheck disable=SC2086 # BAZAAR_ARGS is a list of words
            "$BAZAAR" up --from "$ROOT/scripts/bench/hello/spin.toml" --listen "127.0.0.1:$port" \
                --admin-listen "127.0.0.1:$ADMIN_PORT" --admin-token bench --state-dir "$WORK/state" \
                --cache-dir "$WORK/cache" $BAZAAR_ARGS >"$WORK/$name.log" 2>&1 &
            ;;
        wasmtime | wasmtime-tuned)
            [ -n "$WASMTIME" ] || { echo "hello.sh: --wasmtime BIN is needed" >&2; exit 2; }
            local flags=$WASMTIME_DEFAULT
            [ "$name" = wasmtime-tuned ] && flags=$WASMTIME_TUNED
            # shellcheck disable=SC2086
            "$WASMTIME" serve $flags --addr "127.0.0.1:$port" "$WASM" >"$WORK/$name.log" 2>&1 &
            ;;
        native)
            [ -n "$NATIVE" ] || { echo "hello.sh: --native BIN is needed" >&2; exit 2; }
            "$NATIVE" --listen "127.0.0.1:$port" >"$WORK/$name.log" 2>&1 &
            ;;
        *) echo "hello.sh: unknown server $name (bazaar, wasmtime, wasmtime-tuned, native)" >&2; exit 2 ;;
    esac
    PIDS+=($!)
    local body="" i
    for i in $(seq 1 600); do
        body=$(curl -s --max-time 2 "http://127.0.0.1:$port/" 2>/dev/null) && [ -n "$body" ] && break
        sleep 0.1
    done
    if [ "$body" != "Hello from Bazaar!" ]; then
        echo "hello.sh: $name did not answer the greeting on port $port (got: ${body:-nothing}); its log:" >&2
        cat "$WORK/$name.log" >&2
        exit 1
    fi
}

# One load run: prints "<requests/s> <p50 us> <p99 us> <errors>".
load() {
    local port=$1 conns=$2 duration=$3 threads=2
    [ "$conns" -lt 2 ] && threads=1
    case "$LOADGEN" in
        wrk)
            local line
            line=$(wrk -t "$threads" -c "$conns" -d "$duration" -s "$ROOT/scripts/bench/report.lua" "http://127.0.0.1:$port/" | grep '^RESULT')
            # RESULT requests duration_us p50_us p99_us errors non_2xx
            echo "$line" | awk '{ printf "%.0f %d %d %d\n", $2 / ($3 / 1e6), $4, $5, $6 + $7 }'
            ;;
        oha:*)
            "${LOADGEN#oha:}" -c "$conns" -z "$duration" --no-tui --output-format json "http://127.0.0.1:$port/" |
                jq -r '[.summary.requestsPerSec, (.latencyPercentiles.p50 * 1e6 | floor), (.latencyPercentiles.p99 * 1e6 | floor),
                        (([.statusCodeDistribution | to_entries[] | select(.key != "200") | .value] | add // 0)
                         + ([.errorDistribution | to_entries[] | .value] | add // 0))] | "\(.[0] | floor) \(.[1]) \(.[2]) \(.[3])"'
            ;;
    esac
}

# bazaar's own counters (admin /metrics): instantiations and their seconds,
# requests and their seconds to the response head.
scrape() {
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '
        /^bazaar_instantiation_seconds_sum/ { is += $NF } /^bazaar_instantiation_seconds_count/ { ic += $NF }
        /^bazaar_http_request_duration_seconds_sum/ { rs += $NF } /^bazaar_http_request_duration_seconds_count/ { rc += $NF }
        END { printf "%.9f %d %.9f %d\n", is, ic, rs, rc }'
}

mkdir -p "$(dirname "$OUT")"
TSV="${OUT%.md}.tsv"
read -r -a servers <<<"$SERVERS"
read -r -a conns <<<"$CONNS"
for s in "${servers[@]}"; do start "$s"; done
echo "hello.sh: all servers answer; warming up" >&2
for s in "${servers[@]}"; do load "${PORT[$s]}" 16 2s >/dev/null; done

has_bazaar=0
for s in "${servers[@]}"; do [ "$s" = bazaar ] && has_bazaar=1; done
[ $has_bazaar = 1 ] && before=$(scrape)
printf 'round\tconns\tserver\treq_s\tp50_us\tp99_us\terrors\n' >"$TSV"
n=${#servers[@]}
for round in $(seq 1 "$ROUNDS"); do
    for c in "${conns[@]}"; do
        for i in $(seq 0 $((n - 1))); do
            s=${servers[$(((i + round - 1) % n))]}
            read -r rps p50 p99 errors < <(load "${PORT[$s]}" "$c" "$DURATION")
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$c" "$s" "$rps" "$p50" "$p99" "$errors" >>"$TSV"
            echo "hello.sh: round $round/$ROUNDS, $c connections, $s: $rps req/s, p50 ${p50}us, p99 ${p99}us, $errors errors" >&2
        done
    done
done
[ $has_bazaar = 1 ] && after=$(scrape)

# The table: medians over rounds; ratios are medians of per-round ratios.
{
    echo "| connections | server | req/s | p50 ms | p99 ms | errors |"
    echo "| ---: | --- | ---: | ---: | ---: | ---: |"
    awk -F'\t' -v order="$SERVERS" -v conns="$CONNS" '
        function median(list,   a, k, m) { m = split(list, a, " "); asort(a); return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
        NR > 1 { key = $2 SUBSEP $3; rps[key] = rps[key] " " $4; p50[key] = p50[key] " " $5; p99[key] = p99[key] " " $6; err[key] += $7
                 r[$1, $2, $3] = $4 }
        END {
            ns = split(order, s, " "); nc = split(conns, c, " ")
            for (i = 1; i <= nc; i++) for (j = 1; j <= ns; j++) {
                key = c[i] SUBSEP s[j]
                label = s[j] == "bazaar" ? "bazaar up" : s[j] == "wasmtime" ? "wasmtime serve (defaults)" : s[j] == "wasmtime-tuned" ? "wasmtime serve (tuned)" : "native hyper"
                printf "| %s | %s | %.0f | %.2f | %.2f | %d |\n", c[i], label, median(rps[key]), median(p50[key]) / 1000, median(p99[key]) / 1000, err[key]
            }
        }' "$TSV"
    echo
    echo "| connections | bazaar / wasmtime serve (defaults) | bazaar / wasmtime serve (tuned) | bazaar / native |"
    echo "| ---: | ---: | ---: | ---: |"
    awk -F'\t' -v conns="$CONNS" '
        function median(list,   a, k, m) { m = split(list, a, " "); if (m == 0) return -1; asort(a); return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
        function fmt(x) { return x < 0 ? "-" : sprintf("%.2fx", x) }
        NR > 1 { r[$1, $2, $3] = $4; if ($1 > rounds) rounds = $1 }
        END {
            nc = split(conns, c, " ")
            for (i = 1; i <= nc; i++) {
                d = ""; t = ""; n = ""
                for (k = 1; k <= rounds; k++) {
                    b = r[k, c[i], "bazaar"]
                    if (b == "") continue
                    if (r[k, c[i], "wasmtime"] > 0) d = d " " b / r[k, c[i], "wasmtime"]
                    if (r[k, c[i], "wasmtime-tuned"] > 0) t = t " " b / r[k, c[i], "wasmtime-tuned"]
                    if (r[k, c[i], "native"] > 0) n = n " " b / r[k, c[i], "native"]
                }
                printf "| %s | %s | %s | %s |\n", c[i], fmt(median(d)), fmt(median(t)), fmt(median(n))
            }
        }' "$TSV"
    if [ $has_bazaar = 1 ]; then
        echo
        read -r is0 ic0 rs0 rc0 <<<"$before"
        read -r is1 ic1 rs1 rc1 <<<"$after"
        awk -v is="$is1" -v is0="$is0" -v ic="$ic1" -v ic0="$ic0" -v rs="$rs1" -v rs0="$rs0" -v rc="$rc1" -v rc0="$rc0" 'BEGIN {
            is -= is0; ic -= ic0; rs -= rs0; rc -= rc0
            if (ic > 0) printf "bazaar, from its own metrics (admin /metrics) over the measured runs: %d instantiations, **%.1f µs** per instantiation on average; %.1f µs from the request to the response head on average (%d requests).\n", ic, is / ic * 1e6, (rc > 0 ? rs / rc * 1e6 : 0), rc
        }'
    fi
    echo
    echo "wasmtime serve flags: defaults \`$WASMTIME_DEFAULT\`; tuned \`$WASMTIME_TUNED\`."
} >"$OUT"
cat "$OUT"
