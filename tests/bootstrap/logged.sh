#!/bin/sh
# Stub apt-get, dpkg-query, systemctl (tests/bootstrap/README.md): records the call and fails.
printf '%s %s\n' "$(basename "$0")" "$*" >> "$STUB_DIR/calls.log"
exit 1
