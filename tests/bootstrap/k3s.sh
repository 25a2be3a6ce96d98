#!/bin/sh
# Stub k3s (tests/bootstrap/README.md): one node, Ready unless $STUB_DIR/node-ready says False.
printf 'k3s %s\n' "$*" >> "$STUB_DIR/calls.log"
case "$1 ${2:-} ${3:-}" in
    "--version  ") echo "k3s version v1.31.4+k3s1 (stub)" ;;
    "kubectl get nodes")
        ready=True
        [ ! -f "$STUB_DIR/node-ready" ] || ready=$(cat "$STUB_DIR/node-ready")
        echo "stubnode $ready 10.1.2.3" ;;
    *) echo "stub k3s: unexpected: $*" >&2; exit 2 ;;
esac
