#!/bin/sh
# Stub of k3s's install.sh (tests/bootstrap/README.md): what the real one leaves behind that
# bootstrap.sh looks at: the k3s command, its systemd unit and its kubeconfig.
set -e
printf 'installer ran INSTALL_K3S_SKIP_DOWNLOAD=%s\n' "${INSTALL_K3S_SKIP_DOWNLOAD:-}" >> "$STUB_DIR/installer.log"
if [ "${INSTALL_K3S_SKIP_DOWNLOAD:-}" = true ]; then
    # The real installer uses the binary the admin put there, and fails without it.
    [ -x "$STUB_DIR/bin/k3s" ] || { echo "stub installer: no k3s binary to use" >&2; exit 1; }
else
    cp "$STUB_DIR/k3s.sh" "$STUB_DIR/bin/k3s"
    chmod 0755 "$STUB_DIR/bin/k3s"
fi
echo "[Service]" > "$STUB_DIR/k3s.service"
echo "apiVersion: v1" > "$STUB_DIR/k3s.yaml"
