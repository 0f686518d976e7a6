# The two commands of the README, and the pieces they are made of.
#   make demo   set everything up, record a sample under QEMU, show its hottest blocks
#   make test   set everything up, then formatting, lints, every test and a
#               short run of each fuzz target
#   make bench  the recording benchmark against plain QEMU and QEMU's own plugins

QTRACE := target/release/qtrace
DEMO := target/demo.parquet

.PHONY: setup demo test lint bench clean

setup:
	@scripts/setup.sh

demo: setup
	$(QTRACE) record --force -o $(DEMO) -- samples/build/x86_64/hotloop 3
	$(QTRACE) info $(DEMO)
	$(QTRACE) top-blocks $(DEMO) -n 10

lint: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --release -- -D warnings

test: lint
	cargo test --workspace --release
	scripts/fuzz-smoke.sh

bench: setup
	cargo run --release -p qtrace-benches --bin record-overhead -- --runs 5

clean:
	cargo clean
	$(MAKE) -C samples clean
