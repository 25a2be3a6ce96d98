#!/bin/sh
# Stub orrery (tests/bootstrap/README.md): `config get/set` on $STUB_DIR/orrery-store (KEY=VALUE
# lines); every `config set` is appended to $STUB_DIR/config-set.log.
printf 'orrery %s\n' "$*" >> "$STUB_DIR/calls.log"
[ "${1:-}" != --config ] || shift 2
store=$STUB_DIR/orrery-store
touch "$store"
case "${1:-} ${2:-}" in
    "config get")
        value=$(awk -v key="$3" 'index($0, key "=") == 1 { v = substr($0, length(key) + 2); found = 1 }
            END { if (found) print v; else exit 1 }' "$store") \
            || { echo "stub orrery: $3 is not set" >&2; exit 1; }
        printf '%s\n' "$value" ;;
    "config set")
        printf '%s %s\n' "$3" "$4" >> "$STUB_DIR/config-set.log"
        printf '%s=%s\n' "$3" "$4" >> "$store" ;;
    "config show") ;;
    "version ") echo "orrery 0.0.0-stub" ;;
    *) ;;
esac
