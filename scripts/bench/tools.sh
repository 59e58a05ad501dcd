# The benchmark's outside tools, installed by the benchmark itself (sourced
# by scripts/bench/bench.sh; also usable alone: `scripts/bench/tools.sh
# wasmtime|loadgen` prints the tool's path, installing it first).
#
# - wasmtime-cli, at exactly the version of our wasmtime dependency (read
#   from Cargo.lock), so `wasmtime serve` and bazaar run the same engine.
#   `cargo install` compiles it once (10 to 30 minutes on 2 cores) into
#   $BENCH_CACHE/wasmtime-<version>; later runs reuse it. It is started in
#   the background first thing, so it compiles while the rest builds.
# - The load generator: wrk (Debian's package), or oha from crates.io when
#   apt-get cannot install wrk.

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BENCH_CACHE=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bazaar-bench}
CARGO=${CARGO:-cargo}

# The wasmtime version bazaar is built with: the `wasmtime` package in Cargo.lock.
wasmtime_version() {
    awk '/^name = "wasmtime"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

wasmtime_root() { echo "$BENCH_CACHE/wasmtime-$(wasmtime_version)"; }
wasmtime_bin() { echo "$(wasmtime_root)/bin/wasmtime"; }

# True when the cached wasmtime is there and is the right version (a cut-off
# install leaves no binary: cargo installs it only once it is built).
wasmtime_ready() {
    local bin
    bin=$(wasmtime_bin)
    [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -Eq "^wasmtime $(wasmtime_version)( |$)"
}

# Starts `cargo install wasmtime-cli` in the background unless the cached one
# is ready or an install is already running (its pid in install.pid).
start_wasmtime_install() {
    wasmtime_ready && return 0
    local version dir
    version=$(wasmtime_version)
    [ -n "$version" ] || { echo "bench: no wasmtime package in $ROOT/Cargo.lock" >&2; return 1; }
    dir=$(wasmtime_root)
    mkdir -p "$dir"
    if [ -f "$dir/install.pid" ] && kill -0 "$(cat "$dir/install.pid")" 2>/dev/null; then
        echo "bench: wasmtime-cli $version is already being installed (log: $dir/install.log)" >&2
        return 0
    fi
    echo "bench: installing wasmtime-cli $version into $dir in the background (log: $dir/install.log; takes a while, once)" >&2
    # --locked: the versions wasmtime-cli was released with.
    nohup "$CARGO" install wasmtime-cli --version "=$version" --locked --root "$dir" >"$dir/install.log" 2>&1 &
    echo $! >"$dir/install.pid"
}

# Waits for the background install and fails with its log if it failed.
wait_wasmtime() {
    local dir
    dir=$(wasmtime_root)
    if ! wasmtime_ready && [ -f "$dir/install.pid" ]; then
        echo "bench: waiting for wasmtime-cli $(wasmtime_version) to finish compiling (tail -f $dir/install.log)" >&2
        while kill -0 "$(cat "$dir/install.pid")" 2>/dev/null; do sleep 5; done
    fi
    if ! wasmtime_ready; then
        echo "bench: wasmtime-cli $(wasmtime_version) is not installed in $dir; the install log ends with:" >&2
        tail -20 "$dir/install.log" >&2 || true
        echo "bench: fix the cause and rerun (or install it yourself: cargo install wasmtime-cli --version =$(wasmtime_version) --locked --root $dir)" >&2
        return 1
    fi
}

# Prints the load generator to use, "wrk" or "oha:<path>", installing one.
ensure_loadgen() {
    if command -v wrk >/dev/null; then echo wrk; return 0; fi
    local sudo=""
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; fi
    if command -v apt-get >/dev/null && { [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; }; then
        echo "bench: installing wrk with apt-get" >&2
        if $sudo apt-get install -y wrk >&2 || { $sudo apt-get update >&2 && $sudo apt-get install -y wrk >&2; }; then
            command -v wrk >/dev/null && { echo wrk; return 0; }
        fi
    fi
    local oha="$BENCH_CACHE/oha/bin/oha"
    if [ ! -x "$oha" ]; then
        echo "bench: wrk cannot be installed here; installing oha into $BENCH_CACHE/oha" >&2
        "$CARGO" install oha --locked --root "$BENCH_CACHE/oha" >&2 || {
            echo "bench: no load generator: install wrk (apt-get install wrk) or oha (cargo install oha)" >&2
            return 1
        }
    fi
    echo "oha:$oha"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case "${1:-}" in
        wasmtime) start_wasmtime_install && wait_wasmtime && wasmtime_bin ;;
        loadgen) ensure_loadgen ;;
        *) echo "usage: $0 wasmtime|loadgen" >&2; exit 2 ;;
    esac
fi
