#!/usr/bin/env bash
# Make (or reuse) the Python venv with the real JupyterHub clients the tests use, and print the
# path of its python. Cached by a hash of requirements.txt, so it is built once per change.
# Test binaries run in parallel and may all call this at once: a lock makes them take turns.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${ORRERY_TEST_VENV:-$here/../../target/pyvenv}"
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
want="$(sha256sum "$here/requirements.txt" | cut -c1-16)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements-hash" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --disable-pip-version-check -q -r "$here/requirements.txt" >&2
  echo "$want" > "$venv/.requirements-hash"
fi
echo "$venv/bin/python"
