#!/bin/sh
# start-singleuser.sh: start command of the orrery single-user test image.
#
# Mirrors docker-stacks' start-notebook / start-singleuser semantics:
#   * JUPYTERHUB_API_TOKEN set   -> exec jupyterhub-singleuser [NOTEBOOK_ARGS] "$@"
#     (the hub tells the server where to bind through JUPYTERHUB_SERVICE_URL)
#   * otherwise                  -> exec jupyter lab --ip=0.0.0.0 --port=8888 --no-browser [NOTEBOOK_ARGS] "$@"
# NOTEBOOK_ARGS (word-split, as in docker-stacks) and DOCKER_STACKS_JUPYTER_CMD
# (default "lab") are honoured. Runs fine as a non-root user with every
# capability dropped: it never needs root.

home="${HOME:-/home/jovyan}"
if ! cd "$home" 2>/dev/null; then
    echo "start-singleuser.sh: warning: cannot cd to HOME=$home, staying in $(pwd)" >&2
fi

if [ -n "${JUPYTERHUB_API_TOKEN:-}" ]; then
    # shellcheck disable=SC2086  # NOTEBOOK_ARGS is meant to be word-split
    exec jupyterhub-singleuser ${NOTEBOOK_ARGS:-} "$@"
else
    # shellcheck disable=SC2086
    exec jupyter "${DOCKER_STACKS_JUPYTER_CMD:-lab}" --ip=0.0.0.0 --port=8888 --no-browser ${NOTEBOOK_ARGS:-} "$@"
fi
