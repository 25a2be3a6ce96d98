#!/usr/bin/env bash
# Install (or reuse) the OpenID Provider the OIDC tests run (oidc-provider from the npm
# registry, pinned by package-lock.json) and print its directory. Cached by a hash of
# package.json and package-lock.json; test binaries may call this at once: a lock makes them
# take turns.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${ORRERY_TEST_OIDC:-$here/../../target/oidc-provider}"
mkdir -p "$(dirname "$dest")"
exec 9>"$dest.lock"
flock 9
want="$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -c1-16)"
if [ ! -d "$dest/node_modules/oidc-provider" ] || [ "$(cat "$dest/.lock-hash" 2>/dev/null)" != "$want" ]; then
  rm -rf "$dest"
  mkdir -p "$dest"
  cp "$here/package.json" "$here/package-lock.json" "$dest/"
  (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$want" > "$dest/.lock-hash"
fi
cp "$here/provider.mjs" "$here/keys.mjs" "$dest/"
echo "$dest"
