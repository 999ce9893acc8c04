#!/usr/bin/env bash
# Installs the real peers the tests talk to (../shared/reference/pgstac.md): PostgreSQL + PostGIS from Debian's
# packages, and pypgstac + stac-fastapi-pgstac in a virtual environment of their own (their pins must not steer ours).
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
touch "$DIR/.installed"
