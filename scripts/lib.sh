# Shared by scripts/serve and scripts/test. Source it from the repository root: `source scripts/lib.sh`.
# shellcheck shell=bash

VENV=.venv
STAMP="$VENV/.nidan-install-stamp"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The Debian packages given as arguments, installed with apt-get only when `dpkg -s` says one is missing.
ensure_debian_packages() {
  local missing=() package
  for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing Debian packages (${missing[*]}) and no apt-get to install them"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  say "installing Debian packages: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# What the installed venv was made from: the lock file, the project metadata and the interpreter.
_install_fingerprint() {
  { cat requirements.lock pyproject.toml; "$VENV/bin/python" -VV; } | sha256sum | cut -d' ' -f1
}

# .venv with the locked dependencies and nidan itself (editable); reinstalls only when its inputs changed.
ensure_venv() {
  command -v python3 >/dev/null || die "python3 is not installed (nidan needs Python 3.11 or newer)"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "nidan needs Python 3.11 or newer; python3 is $(python3 -V 2>&1)"
  if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    say "creating the virtual environment in $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    rm -f "$STAMP"
  fi
  local fingerprint
  fingerprint="$(_install_fingerprint)"
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$fingerprint" ] && [ -x "$VENV/bin/nidan" ]; then
    return 0
  fi
  say "installing dependencies from requirements.lock"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.lock
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
  printf '%s\n' "$fingerprint" >"$STAMP"
}
