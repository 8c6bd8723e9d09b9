#!/bin/sh
# Container entrypoint: restore the databases that do not exist from their replicas, then run the
# app under walstream (`replicate -exec`): SIGTERM reaches the app, the last commits are uploaded,
# and the container exits with the app's code.
#
#   entrypoint.sh APP [ARGS...]     replicate and supervise APP
#   entrypoint.sh                   replicate only
#
# Environment:
#   WALSTREAM_CONFIG   config file (default /etc/litestream.yml)
#   WALSTREAM_BIN      the walstream binary (default: walstream on $PATH)
set -eu

bin="${WALSTREAM_BIN:-walstream}"
config="${WALSTREAM_CONFIG:-/etc/litestream.yml}"

if [ ! -f "$config" ]; then
  echo "entrypoint: config file not found: $config (set WALSTREAM_CONFIG or mount one)" >&2
  exit 1
fi

if [ "$#" -eq 0 ]; then
  exec "$bin" replicate -config "$config" -restore-if-db-not-exists
fi

# -exec takes one string that walstream splits like a shell: quote each argument.
cmd=""
for arg in "$@"; do
  quoted=$(printf '%s' "$arg" | sed "s/'/'\\\\''/g")
  cmd="$cmd '$quoted'"
done

exec "$bin" replicate -config "$config" -restore-if-db-not-exists -exec "$cmd"
