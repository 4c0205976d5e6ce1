#!/usr/bin/env bash
# The API contract, checked from outside (issue 10): schemathesis generates
# requests from /openapi.json of the real `roster serve`, on SQLite and on
# PostgreSQL, with every check and a fixed, small example budget and seed.
# It fails on any 5xx and on any response the document does not describe.
# Every check runs except positive_data_acceptance: the schema types each
# field, but some rules are described in prose (an address's syntax, RFC 3339
# times, the values of an enumeration, a seat limit the customer's users
# already exceed), so schema-valid requests can get a documented 400 / 422.
#
#   ROSTER_BIN=target/debug/roster deploy/api-contract.sh
#
# Needs: schemathesis (deploy/test-deps.sh installs the pinned version and
# prints ROSTER_SCHEMATHESIS), PostgreSQL on ROSTER_TEST_PG (default
# postgres://postgres@127.0.0.1:5432/postgres), python3, openssl.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${ROSTER_BIN:?set ROSTER_BIN to the roster binary}"
ST="${ROSTER_SCHEMATHESIS:-st}"
EXAMPLES="${ROSTER_SCHEMATHESIS_EXAMPLES:-5}"
SEED="${ROSTER_SCHEMATHESIS_SEED:-20261202}"
PG_ADMIN="${ROSTER_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
CONFIG="$PWD/deploy/schemathesis/schemathesis.toml"

work="$(mktemp -d)"
server=""
pg_db=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    [ -n "$pg_db" ] && psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# run BACKEND [DATABASE_URL]
run() {
    local backend="$1" url="${2:-}" port token base i customer status=0
    port="$(free_port)"
    token="contract-$(openssl rand -hex 24)"
    base="http://127.0.0.1:$port"
    (
        export ROSTER_LISTEN="127.0.0.1:$port" ROSTER_DATA_DIR="$work/$backend" \
            ROSTER_BOOTSTRAP_TOKEN="$token" ROSTER_SECRET_KEY="$(openssl rand -hex 32)" \
            RUST_LOG="warn"
        unset DATABASE_URL
        [ -n "$url" ] && export DATABASE_URL="$url"
        exec "$ROSTER_BIN" serve
    ) >"$work/$backend.log" 2>&1 &
    server=$!
    for i in $(seq 1 200); do
        curl -fsS "$base/readyz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fsS "$base/readyz" >/dev/null || { cat "$work/$backend.log"; echo "api-contract: roster did not start ($backend)" >&2; return 1; }
    customer="$(curl -fsS -X POST "$base/v1/customers" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' \
        -d '{"name": "Contract", "seat_limit": 100, "domains": ["contract.example"]}' \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')"
    echo "== api contract: schemathesis on $backend ($EXAMPLES examples per operation, seed $SEED)"
    # From the scratch folder: schemathesis keeps its cache in the working directory.
    (cd "$work" && ROSTER_ST_CUSTOMER="$customer" "$ST" --config-file "$CONFIG" run "$base/openapi.json" \
        --checks all \
        --exclude-checks positive_data_acceptance \
        --max-examples "$EXAMPLES" \
        --seed "$SEED" \
        --workers 2 \
        --phases examples,coverage,fuzzing \
        --request-timeout 20 \
        --suppress-health-check all \
        --no-color \
        -H "Authorization: Bearer $token") || status=$?
    if grep -q '"status":5[0-9][0-9]\|internal error' "$work/$backend.log"; then
        echo "api-contract: the server logged internal errors ($backend):" >&2
        grep 'internal error' "$work/$backend.log" | head -20 >&2
        status=1
    fi
    kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
    server=""
    return "$status"
}

failed=0
run sqlite || failed=1
pg_db="roster_contract_$(openssl rand -hex 6)"
psql -q "$PG_ADMIN" -c "CREATE DATABASE $pg_db" >/dev/null
run postgres "${PG_ADMIN%/*}/$pg_db" || failed=1
exit "$failed"
