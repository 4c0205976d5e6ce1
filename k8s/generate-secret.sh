#!/usr/bin/env bash
# Prints the Secret `roster` that every role reads, with fresh random values
# for what Roster generates itself. Apply it once, keep it in your secret
# store, and back up ROSTER_SECRET_KEY with the database: without it the
# stored directory passwords and client secrets cannot be opened.
#
#   k8s/generate-secret.sh --database-url 'postgres://roster:...@db:5432/roster?sslmode=verify-full' \
#                          --nats-url 'nats://nats:4222' | kubectl apply -n roster -f -
#   k8s/generate-secret.sh --dev | kubectl apply -n roster-dev -f -
#
# Values (docs/operations.md):
#   DATABASE_URL            PostgreSQL 15+ (required on Kubernetes)
#   NATS_URL                NATS JetStream; the relay publishes events there
#   ROSTER_SECRET_KEY       32 random bytes, base64: seals directory secrets
#   ROSTER_BOOTSTRAP_TOKEN  the first partner-administrator API token
#   POSTGRES_PASSWORD       --dev only: the password of the dev PostgreSQL
set -euo pipefail

usage() {
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

database_url="" nats_url="" dev=0 name=roster
while [ "$#" -gt 0 ]; do
    case "$1" in
        --database-url) database_url="${2:?--database-url needs a value}"; shift 2 ;;
        --nats-url) nats_url="${2:?--nats-url needs a value}"; shift 2 ;;
        --name) name="${2:?--name needs a value}"; shift 2 ;;
        --dev) dev=1; shift ;;
        -h|--help) usage ;;
        *) echo "generate-secret: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done

command -v openssl >/dev/null || { echo "generate-secret: needs openssl" >&2; exit 1; }
pg_password=""
if [ "$dev" -eq 1 ]; then
    pg_password=$(openssl rand -hex 24)
    : "${database_url:=postgres://roster:${pg_password}@roster-postgres:5432/roster}"
    : "${nats_url:=nats://roster-nats:4222}"
fi
[ -n "$database_url" ] || { echo "generate-secret: --database-url is required (or --dev)" >&2; exit 2; }
[ -n "$nats_url" ] || { echo "generate-secret: --nats-url is required (or --dev)" >&2; exit 2; }
case "$database_url" in
    postgres://*|postgresql://*) ;;
    *) echo "generate-secret: --database-url must be a postgres:// URL" >&2; exit 2 ;;
esac
case "$nats_url" in
    nats://*|tls://*) ;;
    *) echo "generate-secret: --nats-url must be a nats:// or tls:// URL" >&2; exit 2 ;;
esac

# YAML single-quoted scalars: a quote is doubled.
q() { printf "'%s'" "${1//\'/\'\'}"; }

cat <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: $name
  labels: {app.kubernetes.io/name: roster, app.kubernetes.io/part-of: roster}
type: Opaque
stringData:
  DATABASE_URL: $(q "$database_url")
  NATS_URL: $(q "$nats_url")
  ROSTER_SECRET_KEY: $(q "$(openssl rand -base64 32)")
  ROSTER_BOOTSTRAP_TOKEN: $(q "$(openssl rand -hex 32)")
YAML
if [ "$dev" -eq 1 ]; then
    echo "  POSTGRES_PASSWORD: $(q "$pg_password")"
fi
