#!/usr/bin/env bash
# Measures hot swap on the shop: for each component, the time to compile
# (no compile cache), link and check a build, and to switch to it; then
# swaps `products` while four clients read the catalogue through the
# gateway, and counts the requests served and failed during the swap.
#
#   make components && scripts/measure-swap.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WASM=target/wasm32-wasip2/release
PORT=${PORT:-3900}
ADMIN=${ADMIN:-3901}
STATE=$(mktemp -d)
trap 'kill $HOST 2>/dev/null; rm -rf "$STATE"' EXIT

"${CARGO_TARGET_DIR:-target}/debug/bazaar" up --from spin.toml --runtime-config-file runtime-config/embedded.toml \
  --state-dir "$STATE" --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$ADMIN --admin-token measure \
  --no-cache >"$STATE/log" 2>&1 &
HOST=$!
until curl -sf http://127.0.0.1:$ADMIN/healthz >/dev/null; do sleep 0.2; done

swap() {
  curl -sf -H 'Authorization: Bearer measure' --data-binary @"$WASM/$1.wasm" \
    http://127.0.0.1:$ADMIN/admin/components/$1/swap
}

echo "component      size  compile+link+check  switch"
for c in gateway auth users products orders payments notifications; do
  swap "$c" | python3 -c "import json,sys,os; r=json.load(sys.stdin); \
print(f\"{sys.argv[1]:<13} {os.path.getsize(sys.argv[2])//1024:>4}K  {r['compile_ms']:>15.0f} ms  {r['switch_us']:>5.1f} µs\")" "$c" "$WASM/$c.wasm"
done

# Four clients read the catalogue (a distinct query each time, past the
# gateway's cache, so every request reaches products) during one swap.
CLIENTS=()
for i in 1 2 3 4; do
  ( n=0; while [ ! -e "$STATE/stop" ]; do n=$((n+1))
      code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/api/products?q=c$i-$n")
      echo "$code" >>"$STATE/load$i"; done ) &
  CLIENTS+=($!)
done
sleep 1
before=$(cat "$STATE"/load* | wc -l)
swap products >/dev/null
after=$(cat "$STATE"/load* | wc -l)
sleep 1
touch "$STATE/stop"; wait "${CLIENTS[@]}"
total=$(cat "$STATE"/load* | wc -l)
failed=$(cat "$STATE"/load* | grep -cv '^200$' || true)
echo "products swapped under load: $((after - before)) requests completed during the swap;" \
  "$total requests in all, $failed not 200"
