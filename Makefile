# The two commands of the README:
#   make up    builds everything and serves the shop (spin.toml) on 127.0.0.1:3000
#   make test  builds everything and runs the whole test suite
# Everything else here is what those two need.

CARGO ?= cargo
WASM := --target wasm32-wasip2 --release
# Where cargo writes: CARGO_TARGET_DIR when set (a cache outside the clone),
# else target/.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
# spin.toml names each component's Wasm under target/wasm32-wasip2/release, as
# Spin's templates do (a manifest cannot read the environment), and so do the
# tests. When cargo writes elsewhere, the built .wasm files are copied there.
define wasm-into-target
	@if [ "$$(realpath -m $(TARGET_DIR))" != "$$(realpath -m target)" ]; then \
	  mkdir -p target/wasm32-wasip2/release && \
	  cp -p $(TARGET_DIR)/wasm32-wasip2/release/*.wasm target/wasm32-wasip2/release/ && \
	  echo "copied the .wasm files from $(TARGET_DIR) into target/ (where spin.toml looks)"; \
	fi
endef
# The shop's services (components/*, except the shared library crate).
SHOP_COMPONENTS := $(filter-out shared,$(notdir $(patsubst %/Cargo.toml,%,$(wildcard components/*/Cargo.toml))))
# Components the tests load (tests/components/*).
TEST_COMPONENTS := $(notdir $(patsubst %/Cargo.toml,%,$(wildcard tests/components/*/Cargo.toml)))

.PHONY: up test setup host components wasm bench clean

setup:
	rustup target add wasm32-wasip2

host: setup
	$(CARGO) build -p bazaar

# The shop's components, through their own build commands (as `spin build`).
components: host
	$(TARGET_DIR)/debug/bazaar build --from spin.toml
	$(wasm-into-target)

# Every wasm crate in one cargo invocation (faster than one per component).
wasm: setup
	$(CARGO) build $(WASM) $(addprefix -p ,$(SHOP_COMPONENTS) $(TEST_COMPONENTS))
	$(wasm-into-target)

up: components
	$(TARGET_DIR)/debug/bazaar up --from spin.toml --runtime-config-file runtime-config/embedded.toml

# The host's unit and end-to-end tests and the components' own unit tests
# (pure logic, compiled natively), in one cargo invocation. Cargo unifies
# dependency features per invocation, and the host's dev-dependencies change
# features deep in its tree (syn's, so every derive macro's, so nearly every
# crate's): a `cargo build -p bazaar` first, or a second `cargo test` for the
# components, compiled most of the tree again, a third of a cold build (the
# e2e tests run the binary `cargo test` builds, CARGO_BIN_EXE_bazaar).
test: wasm
	$(CARGO) test -p bazaar -p shop-shared $(addprefix -p ,$(SHOP_COMPONENTS))

# Benchmarks (scripts/bench/bench.sh): hello world against wasmtime serve and
# native hyper, start-up time, the shop under load; writes BENCHMARKS.md.
# Builds and installs what it needs (wrk, wasmtime-cli into ~/.cache).
.PHONY: bench-quick
bench: setup
	scripts/bench/bench.sh

# The same, short (under 3 minutes once built).
bench-quick: setup
	scripts/bench/bench.sh --quick

clean:
	$(CARGO) clean
	rm -rf .bazaar
