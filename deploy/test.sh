#!/usr/bin/env bash
# Runs every test of Roster, installing and starting what the tests need.
# Idempotent; safe on a fresh Debian 12 machine (as root) and on a developer's.
#
#   deploy/test.sh                 # everything
#   deploy/test.sh -E 'test(t1_)'  # extra arguments go to cargo nextest
set -euo pipefail
cd "$(dirname "$0")/.."

# Servers and tools: slapd, Samba AD DC, ldb-tools, nats-server >= 2.10, a running PostgreSQL.
deps=$(deploy/test-deps.sh)
echo "$deps"
eval "$(printf '%s\n' "$deps" | sed -n 's/^ *\(export [A-Z_]*=.*\)$/\1/p')"

if ! command -v cargo-nextest >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

echo "== format"
cargo fmt --all -- --check

echo "== build"
cargo build --workspace --bins --tests --benches
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export ROSTER_BIN="$target_dir/debug/roster"

echo "== lint"
cargo clippy --workspace --all-targets -- -D warnings

echo "== kubernetes manifests (kustomize build + schema validation, 1.30 to 1.37)"
deploy/k8s-check.sh

echo "== test"
cargo nextest run --workspace --no-fail-fast --profile ci "$@"

# Only for the whole suite: extra arguments select some tests.
if [ "$#" -eq 0 ]; then
  echo "== api contract (schemathesis)"
  deploy/api-contract.sh
fi
cargo test --workspace --doc
