#!/bin/sh
# Stub curl (tests/bootstrap/README.md): records the call, writes the fake k3s installer to -o.
printf 'curl %s\n' "$*" >> "$STUB_DIR/calls.log"
out=""
while [ $# -gt 0 ]; do
    case $1 in
        -o) out=$2; shift ;;
    esac
    shift
done
[ -n "$out" ] || { echo "stub curl: only -o FILE downloads are faked" >&2; exit 2; }
[ "${STUB_CURL_FAIL:-0}" != 1 ] || { echo "curl: (6) Could not resolve host" >&2; exit 6; }
cp "$STUB_DIR/k3s-install.sh" "$out"
