#!/usr/bin/env bash
# Usage (from the repo root, as root): bash .device-bundle/run.sh COMMAND [ARGS...]
# Installs bundle.tar.xz under /opt/cb (Python 3.11.7, the project's venv, PostgreSQL 15,
# redis-server, their libraries), links ./.venv to it, exports COREBOARD_PG_BIN and a PATH with
# redis-server, then runs COMMAND in the repo root.
set -euo pipefail
BUNDLE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(pwd)
TARBALL=$BUNDLE_DIR/bundle.tar.xz
log() { echo "[device-bundle] $*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root (extracts to /opt/cb)"; exit 2; }

# 1. Extract (once per bundle version; a warm machine keeps /opt/cb).
stamp=$(cksum < "$TARBALL" | cut -d' ' -f1-2)
if [ "$(cat /opt/cb/.stamp 2>/dev/null || true)" != "$stamp" ]; then
  SECONDS=0
  rm -rf /opt/cb; mkdir -p /opt
  if command -v xz >/dev/null 2>&1; then
    xz -dc "$TARBALL" | tar -xf - -C / --no-same-owner
  else
    python3 - "$TARBALL" <<'EOF'
import sys, tarfile
with tarfile.open(sys.argv[1], "r:xz") as tar:
    tar.extractall("/", numeric_owner=True)
EOF
  fi
  echo "$stamp" > /opt/cb/.stamp
  log "extracted to /opt/cb in ${SECONDS}s"
fi

# 2. Time zone data for PostgreSQL (compiled-in /usr/share/zoneinfo) and Python's zoneinfo.
if [ ! -e /usr/share/zoneinfo/UTC ]; then
  mkdir -p /usr/share/zoneinfo
  cp -a -n /opt/cb/zoneinfo/. /usr/share/zoneinfo/ 2>/dev/null || true
  log "installed tzdata into /usr/share/zoneinfo"
fi
export PYTHONTZPATH=/usr/share/zoneinfo:/opt/cb/zoneinfo

# 3. The venv: ./.venv -> /opt/cb/venv; the editable install points at this checkout.
if [ -e .venv ] && [ ! -L .venv ]; then
  log "moving the existing .venv to .venv.device-orig"; rm -rf .venv.device-orig; mv .venv .venv.device-orig
fi
ln -sfn /opt/cb/venv .venv
echo "$REPO/" > /opt/cb/venv/lib/python3.11/site-packages/coreboard.pth
# Front-end vendor files (settings.STATICFILES_DIRS), where npm did not install them.
if [ ! -e node_modules/chart.js ]; then mkdir -p node_modules; ln -sfn /opt/cb/node_modules/chart.js node_modules/chart.js; fi

# 4. Accounts: postgres (PostgreSQL) and coreboard (Redis); stack.py uses useradd when missing.
for user in postgres "${COREBOARD_OS_USER:-coreboard}"; do
  if ! id -u "$user" >/dev/null 2>&1 && ! command -v useradd >/dev/null 2>&1; then
    uid=$(awk -F: 'BEGIN{m=900}{if($3>=m&&$3<60000)m=$3+1}END{print m}' /etc/passwd)
    echo "$user:x:$uid:" >> /etc/group
    echo "$user:x:$uid:$uid::/nonexistent:/usr/sbin/nologin" >> /etc/passwd
    log "created user $user ($uid) by hand (no useradd)"
  fi
done
command -v runuser >/dev/null 2>&1 || log "WARNING: runuser missing (util-linux); PostgreSQL cannot start as root"
# PostgreSQL runs as `postgres` and must reach ./var: let others traverse the checkout's
# ancestors (stack.py would otherwise need setfacl).
d=$REPO
while [ "$d" != / ]; do
  [ -n "$(find "$d" -maxdepth 0 -perm -o+x)" ] || { chmod o+x "$d"; log "chmod o+x $d"; }
  d=$(dirname "$d")
done

# 5. Environment: the services' wrappers (they set LD_LIBRARY_PATH for themselves only).
export COREBOARD_PG_BIN=/opt/cb/pgbin
export PATH=/opt/cb/bin:$PATH
if [ $# -eq 0 ]; then log "ready; no command given"; exit 0; fi
exec "$@"
