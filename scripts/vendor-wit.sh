#!/usr/bin/env bash
# Refreshes wit/ from the spin-sdk crate's own wit/ folder.
#
# The WIT packages under wit/deps are copied verbatim (Apache-2.0 WITH
# LLVM-exception, from the spin-sdk crate published on the Rust package registry); wit/world.wit
# (package bazaar:host) is ours: the world of capabilities the host implements.
#
# Usage: scripts/vendor-wit.sh [SPIN_SDK_VERSION]   (default 5.2.0)
set -euo pipefail
version="${1:-5.2.0}"
root="$(cd "$(dirname "$0")/.." && pwd)"

# Make cargo download the crate if it is not in the registry cache yet.
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/spin-sdk-"$version" 2>/dev/null | head -n1 || true)
if [ -z "$src" ]; then
  cargo info "spin-sdk@$version" >/dev/null
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/spin-sdk-"$version" | head -n1)
fi

# The whole deps folder is taken: Spin's worlds reference every WASI version
# they support, and WIT resolution needs all of them. spin-sdk's own world
# (package spin:up, the world every Spin host shares) becomes deps/spin-up.
rm -rf "$root/wit/deps"
cp -r "$src/wit/deps" "$root/wit/deps"
mkdir -p "$root/wit/deps/spin-up"
cp "$src/wit/world.wit" "$root/wit/deps/spin-up/world.wit"
packages=$(ls "$root/wit/deps" | tr '\n' ' ')
cp "$src/LICENSE" "$root/wit/deps/LICENSE"
cat > "$root/wit/deps/PROVENANCE.md" <<NOTE
# Provenance of wit/deps

Copied verbatim by \`scripts/vendor-wit.sh\` from the \`wit/deps\` folder of the
\`spin-sdk\` crate, version $version, as published on the Rust package registry
(repository: spinframework/spin-rust-sdk). Licence: Apache-2.0 WITH
LLVM-exception, see LICENSE in this folder.

Packages: ${packages}

Do not edit these files by hand; run \`scripts/vendor-wit.sh\` to refresh them.
NOTE
echo "vendored WIT packages from spin-sdk $version: $packages"
