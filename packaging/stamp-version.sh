#!/bin/sh
# Set the version an orrery binary reports, after the build, without recompiling (as Go's
# `-ldflags -X` does): the binary keeps its version in a 64-byte stamp that starts with
# ORRERY_VERSION_STAMP: (src/version.rs). Writes a stamped copy; the input is left alone.
#
#   packaging/stamp-version.sh target/release/orrery 0.2.0 dist/orrery
set -eu
[ $# -eq 3 ] || { echo "usage: $0 BINARY VERSION OUTPUT" >&2; exit 2; }
exec python3 - "$1" "$2" "$3" <<'PY'
import os, re, sys
src, version, out = sys.argv[1:]
marker = b"ORRERY_VERSION_STAMP:"
length = 64
if not re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+([-+~][0-9A-Za-z.-]+)?", version):
    sys.exit(f"stamp-version: {version!r} is not a version like 1.2.3 or 1.2.3-rc.1")
data = bytearray(open(src, "rb").read())
# The stamp: the marker, a version, then NULs up to 64 bytes (the marker text may also occur
# elsewhere, e.g. in debug builds; only the padded block is the stamp).
stamp = re.compile(re.escape(marker) + rb"[0-9A-Za-z.+~-]{1,40}\0+")
found = [m.start() for m in stamp.finditer(data) if m.end() - m.start() >= length]
if len(found) != 1:
    sys.exit(f"stamp-version: {src} has no single version stamp ({len(found)} found; not an orrery binary?)")
at = found[0]
body = marker + version.encode()
if len(body) >= length:
    sys.exit(f"stamp-version: {version!r} is too long for the stamp")
data[at:at + length] = body + b"\0" * (length - len(body))
tmp = out + ".stamp-tmp"
with open(tmp, "wb") as f:
    f.write(data)
os.chmod(tmp, 0o755)
os.replace(tmp, out)
print(f"stamp-version: {out} says orrery {version}")
PY
