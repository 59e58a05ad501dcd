# The two commands of the README:
#   make up    builds everything and serves the app in spin.toml on 127.0.0.1:3000
#   make test  builds everything and runs the whole test suite
# Everything else here is what those two need.

CARGO ?= cargo
# Components compiled to wasm for the tests (tests/components/*).
TEST_COMPONENTS := $(notdir $(wildcard tests/components/*))

.PHONY: up test setup host components test-components bench clean

setup:
	rustup target add wasm32-wasip2

host: setup
	$(CARGO) build -p bazaar

# The components of spin.toml, through their own build commands.
components: host
	./target/debug/bazaar build --from spin.toml

test-components: setup
	$(CARGO) build --target wasm32-wasip2 --release $(addprefix -p ,$(TEST_COMPONENTS))

up: components
	./target/debug/bazaar up --from spin.toml

test: host test-components
	$(CARGO) test -p bazaar

clean:
	$(CARGO) clean
	rm -rf .bazaar
