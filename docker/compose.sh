#!/bin/sh
# docker/compose.sh - run docker compose (or podman-compose, set up by docker/engine.sh) on
# docker/docker-compose.yml under one project name, so every command finds the same topology.
#   docker/compose.sh up -d | ps | logs wsgate2 | stop wsgate2 | start wsgate2 | down
# WSGATE_COMPOSE_PROJECT names the project (default "wsgate"). WSGATE_REDIS_MODE=cluster lays
# docker-compose.cluster.yml over it (a 3-master, 3-replica Redis Cluster; the replicas in
# cluster mode). With podman, `down` also
# removes the project network, which podman-compose 1.0.3 leaves behind.
set -eu

ENGINE_PROG=compose
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/docker/engine.sh"
[ -n "${ENGINE:-}" ] || engine_init

project=${WSGATE_COMPOSE_PROJECT:-wsgate}
files="-f $top/docker/docker-compose.yml"
case "${WSGATE_REDIS_MODE:-single}" in
single) ;;
cluster) files="$files -f $top/docker/docker-compose.cluster.yml" ;;
*) engine_die "WSGATE_REDIS_MODE must be single or cluster, not '$WSGATE_REDIS_MODE'" ;;
esac
rc=0
# shellcheck disable=SC2086 # one word per option
compose -p "$project" $files "$@" || rc=$?
if [ "$ENGINE" = podman ] && [ "${1:-}" = down ] &&
    podman network exists "${project}_default" 2>/dev/null; then
	podman network rm -f "${project}_default" >/dev/null || rc=1
fi
exit "$rc"
