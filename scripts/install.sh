#!/usr/bin/env bash
# Installs what cityops needs on Debian 12, idempotently: apt packages (as root), the project
# virtualenv with the pinned Python packages (requirements.lock), and the web map's npm packages.
# A second run checks stamps and returns in a second or two.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(postgresql-15 postgresql-15-postgis-3 postgresql-client-15 gdal-bin nginx pgbouncer python3-venv python3-dev
              build-essential nodejs npm chromium fonts-noto-cjk wrk curl ca-certificates
              python3-qgis qgis-providers)  # PyQGIS writes /qgis/project.qgs; QGIS in the client tests

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# A machine may already have its own Node.js: keep it.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]:-}"
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "cityops needs these Debian packages: ${missing[*]}" >&2
    echo "install them as root (sudo apt-get install -y ${missing[*]}) and run again" >&2
    exit 1
  fi
  echo "==> apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's postgresql package starts a 'main' cluster where systemd runs; cityops uses its own.
fi

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.cityops-installed
# The editable install maps the top-level packages it saw: a new package folder means reinstall.
want=$( (cat requirements.lock pyproject.toml; ls -d */__init__.py) | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "==> installing Python packages (requirements.lock)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps -e .
  echo "$want" >"$stamp"
fi

if [[ -f web_map/package-lock.json ]]; then
  npm_stamp=web_map/node_modules/.cityops-installed
  want=$(sha256sum web_map/package-lock.json | cut -d' ' -f1)
  if [[ ! -f $npm_stamp || $(cat "$npm_stamp") != "$want" ]]; then
    echo "==> installing web map packages (npm ci)"
    (cd web_map && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$npm_stamp"
  fi
fi
