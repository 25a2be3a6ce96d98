#!/bin/sh
# Runs bootstrap.sh's --backend k3s steps (install k3s, wait for the node, the config) against
# the stubs in $STUB_DIR (tests/bootstrap/README.md): sh k3s-steps.sh BOOTSTRAP.SH OPTIONS...
# k3s cannot be downloaded or run on the development and CI machines, hence the stubs.
set -u
bootstrap=$1
shift
ORRERY_BOOTSTRAP_SOURCE_ONLY=1
# shellcheck source=../../bootstrap/bootstrap.sh
. "$bootstrap"
parse_args "$@"
# Where the real installer and k3s put things, moved into the test's directory.
K3S_BIN=$STUB_DIR/bin/k3s
K3S_UNIT=$STUB_DIR/k3s.service
K3S_KUBECONFIG=$STUB_DIR/k3s.yaml
K3S_IMAGES_DIR=$STUB_DIR/images
BIN=$STUB_DIR/bin/orrery
CONFIG_DIR=$STUB_DIR/etc
CONFIG=$CONFIG_DIR/config.toml
install_k3s
wait_k3s_ready
write_config
