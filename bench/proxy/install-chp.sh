#!/usr/bin/env bash
# configurable-http-proxy from the npm registry, pinned by chp/package-lock.json, installed into
# target/bench-chp-<lock hash>/ (reused while the lock file is unchanged). Prints the path of
# its `configurable-http-proxy` script on stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
command -v npm >/dev/null || { echo "npm is needed (apt-get install nodejs npm)" >&2; exit 1; }
hash=$(sha256sum "$here/chp/package-lock.json" | cut -c1-16)
dest="$root/target/bench-chp-$hash"
if [ ! -x "$dest/node_modules/.bin/configurable-http-proxy" ]; then
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  cp "$here/chp/package.json" "$here/chp/package-lock.json" "$dest.tmp/"
  (cd "$dest.tmp" && npm ci --no-audit --no-fund --loglevel=error >&2)
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
fi
echo "$dest/node_modules/.bin/configurable-http-proxy"
