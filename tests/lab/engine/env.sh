# shellcheck shell=bash
# env.sh: source this (`. tests/lab/engine/env.sh`) in lab scripts to call the lab's docker client.
# The engine (see ensure-engine.sh) listens on the default socket, unix:///var/run/docker.sock, so no
# DOCKER_HOST is needed; this only puts the engine's own client (26.1.5, same version as dockerd) first on
# PATH.  /usr/local/bin/docker (28.x) would also work: it negotiates the API down to 1.45.
case ":$PATH:" in
  *":/opt/lasuite-lab/bin:"*) ;;
  *) export PATH="/opt/lasuite-lab/bin:$PATH" ;;
esac
export DOCKER_BUILDKIT=0   # no buildx plugin here: the legacy builder
