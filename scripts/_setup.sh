# Shared set-up of scripts/demo and scripts/test (sourced, not run).
#
# On a fresh machine: check Python >= 3.10, create .venv if missing, install the package with its test
# and lint extras (again only when pyproject.toml changed), and make sure redis-server is installed,
# through apt-get when it is missing and we are root (chromium too, for the browser tests). Anything it
# cannot fix is named, with the command that fixes it, and the script exits non-zero.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11 python3.10; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

ensure_venv() {
    if [ ! -x "$PY" ]; then
        local base
        base="$(find_python)" || die "Python 3.10 or newer is required (install python3, or set PYTHON=/path/to/python3.X)"
        say "creating .venv with $base"
        "$base" -m venv "$VENV" || die "could not create .venv: install the venv module (apt-get install python3-venv)"
    fi
    local stamp="$VENV/.celeriac-installed"
    if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
        say "installing celeriac into .venv (pip install -e '.[test,lint,docs]')"
        "$PY" -m pip install --quiet --disable-pip-version-check -e '.[test,lint,docs]'
        touch "$stamp"
    fi
}

ensure_redis() {
    if [ -n "${CELERIAC_REDIS_SERVER:-}" ] && [ -x "${CELERIAC_REDIS_SERVER}" ]; then
        return 0
    fi
    if command -v redis-server >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing redis-server (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq </dev/null
        apt-get install -y -qq redis-server </dev/null >/dev/null
        command -v redis-server >/dev/null 2>&1 || die "apt-get did not install redis-server"
        return 0
    fi
    die "redis-server is not installed. Install it and run this again:
    sudo apt-get install redis-server      # Debian, Ubuntu
    brew install redis                     # macOS
(or point CELERIAC_REDIS_SERVER at a redis-server binary). celeriac starts private servers on free
ports; it never uses a Redis already running on 6379."
}

# Debian's Chromium for the dashboard's real-browser tests (Playwright drives it through
# executable_path; Playwright's own browser download is never used). Installed when missing and root;
# otherwise the browser tests skip locally (and fail in CI) with the command that fixes it.
ensure_chromium() {
    if [ -x "${CELERIAC_CHROMIUM:-/usr/bin/chromium}" ]; then
        return 0
    fi
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing chromium for the browser tests (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq </dev/null
        apt-get install -y -qq chromium </dev/null >/dev/null || say "apt-get could not install chromium"
        return 0
    fi
    say "chromium is missing: the dashboard's browser tests will skip (sudo apt-get install chromium)"
}
