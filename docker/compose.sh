#!/bin/sh
# docker/compose.sh - run docker compose (or podman-compose, set up by docker/engine.sh) on
# docker/docker-compose.yml under one project name, so every command finds the same topology.
#   docker/compose.sh up -d | ps | logs wsgate2 | stop wsgate2 | start wsgate2 | down
# WSGATE_COMPOSE_PROJECT names the project (default "wsgate"). With podman, `down` also
# removes the project network, which podman-compose 1.0.3 leaves behind.
set -eu

ENGINE_PROG=compose
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/docker/engine.sh"
[ -n "${ENGINE:-}" ] || engine_init

project=${WSGATE_COMPOSE_PROJECT:-wsgate}
rc=0
compose -p "$project" -f "$top/docker/docker-compose.yml" "$@" || rc=$?
if [ "$ENGINE" = podman ] && [ "${1:-}" = down ] &&
    podman network exists "${project}_default" 2>/dev/null; then
	podman network rm -f "${project}_default" >/dev/null || rc=1
fi
exit "$rc"
