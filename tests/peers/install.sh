#!/usr/bin/env bash
# Installs the real peers the tests talk to (../shared/reference/pgstac.md): PostgreSQL + PostGIS from Debian's
# packages, pypgstac + stac-fastapi-pgstac in a virtual environment of their own (their pins must not steer ours), and
# ipfs-unixfs-importer from npm (the oracle of computed CIDs).
# Idempotent; `make test` runs it once per requirements change.   usage: install.sh PYTHON PEERS_DIR
set -euo pipefail
PY="$1"
DIR="$2"
REQS=("pypgstac[psycopg]==0.10.0" "stac-fastapi-pgstac==7.2.0" "uvicorn[standard]>=0.30")

have_postgis() { ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; }

if ! have_postgis || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "PostgreSQL + PostGIS are missing and this user cannot install them:" \
      "run as root, or apt-get install postgresql postgresql-15-postgis-3" >&2; exit 1; }
    SUDO="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt_install() { $SUDO apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
  # package lists may be missing on a fresh machine: update only when an install fails
  apt_install postgresql || { $SUDO apt-get update -q >/dev/null && apt_install postgresql; }
  V="$(ls /usr/lib/postgresql | sort -n | tail -1)"
  apt_install "postgresql-$V-postgis-3" "postgresql-$V-postgis-3-scripts" || {
    $SUDO apt-get update -q >/dev/null && apt_install "postgresql-$V-postgis-3" "postgresql-$V-postgis-3-scripts"; }
  have_postgis || { echo "PostGIS did not install; see apt-get's output above" >&2; exit 1; }
fi

if [ ! -x "$DIR/venv/bin/python" ]; then
  "$PY" -m venv "$DIR/venv"
fi
"$DIR/venv/bin/python" -m pip install -q --upgrade pip
"$DIR/venv/bin/python" -m pip install -q "${REQS[@]}"

# The oracle for computed IPFS CIDs (tests/oracles/ipfs_cid.mjs): ipfs-unixfs-importer from the npm registry.
if command -v npm >/dev/null; then
  mkdir -p "$DIR/ipfs"
  (cd "$DIR/ipfs" && [ -f package.json ] || echo '{"name": "stacbatch-ipfs-oracle", "private": true}' > package.json)
  (cd "$DIR/ipfs" && npm install -q --no-audit --no-fund ipfs-unixfs-importer@17.1.1 >/dev/null) ||
    echo "npm install ipfs-unixfs-importer failed: the CID oracle tests will fail or skip" >&2
else
  echo "npm not found: the CID tests will compare with known CIDs only (apt-get install nodejs npm)" >&2
fi
touch "$DIR/.installed"
