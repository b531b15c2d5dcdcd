#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) with botenv and its test tools installed. Idempotent:
# re-installs only when pyproject.toml changed since the last run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

python=""
for candidate in python3.11 python3.12 python3.13 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python="$candidate"; break
  fi
done
if [ -z "$python" ]; then
  echo "bootstrap: botenv needs Python >= 3.11 (python3.11 or newer on PATH)" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
stamp=".venv/.botenv-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "bootstrap: installing botenv and test tools into .venv (versions from constraints.txt)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]' -c constraints.txt
  touch "$stamp"
fi
if ! command -v kubectl >/dev/null 2>&1; then
  echo "bootstrap: kubectl is required (the cluster tests and the quick start use it)" >&2
  exit 1
fi
