#!/bin/sh
# tests/docker/check-docker.sh - `make check-docker`: build the images, bring up the compose
# topology of docker/docker-compose.yml (HAProxy, wsgate1..3, Redis) and check it from the host
# with tests/docker/topology_test.py: health, /echo, cross-replica broadcast, redis-cli PUBLISH,
# SIGTERM drain with reconnects, restart, channel history (issue 11: a Redis restart, a drain and
# hops with ?since= while messages are published), Redis down (every replica unhealthy and DOWN
# in HAProxy, back UP with Redis). The topology is torn down whatever happens.
#
# Docker when `docker info` answers, otherwise podman set up for this host (docker/engine.sh:
# installs podman, podman-compose, runc, debootstrap with apt-get when missing; makes the
# debian:bookworm-slim base once, cached in /var/tmp/wsgate-podman). Needs root or sudo then.
# Settings:
#   WSGATE_DOCKER_REF=HEAD     build the committed tree instead of the work tree's files
#   WSGATE_CHECK_NO_BUILD=1    use the images already built
#   WSGATE_CHECKS=a,b          run only some checks (health,echo,broadcast,publish,drain,restart,history,redis)
#   WSGATE_CONFIG=/abs/x.ini   another wsgate config for the replicas
#   WSGATE_REDIS_MODE=cluster  a 3-master, 3-replica Redis Cluster instead of the one Redis
#                              (docker/docker-compose.cluster.yml); checks default to
#                              health,echo,broadcast (the others drive the single "redis")
#   WSGATE_CHECK_KEEP=1        leave the topology up afterwards (then: docker/compose.sh down)
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
ENGINE_PROG=check-docker
. "$top/docker/engine.sh"

t_start=$(date +%s)
phase() {
	printf '==== [%4ss] %s\n' "$(($(date +%s) - t_start))" "$*"
}
why=""
fail() {
	why=$*
	printf '==== [%4ss] check-docker FAILED: %s\n' "$(($(date +%s) - t_start))" "$*" >&2
	exit 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-check-docker.XXXXXX")
WSGATE_PODMAN_CONF_DIR=$tmp
export WSGATE_PODMAN_CONF_DIR

phase "engine"
engine_init
/usr/bin/python3 -c 'import websockets' 2>/dev/null ||
    engine_apt_install python3 python3-websockets || fail "cannot install python3-websockets"

# Free loopback ports for HAProxy, so a gateway already running here is left alone.
free_port() {
	/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
WSGATE_HTTP_PORT=$(free_port)
WSGATE_STATS_PORT=$(free_port)
WSGATE_COMPOSE_PROJECT=wsgate-check-$$
export WSGATE_HTTP_PORT WSGATE_STATS_PORT WSGATE_COMPOSE_PROJECT

if [ -z "${WSGATE_CHECK_NO_BUILD:-}" ]; then
	phase "build images (${WSGATE_DOCKER_REF:-work tree})"
	"$top/docker/build.sh" || fail "image build"
fi

containers() {
	engine ps -a --filter "label=com.docker.compose.project=$WSGATE_COMPOSE_PROJECT" \
	    --format '{{.Names}}' 2>/dev/null
}

show_logs() {
	for c in $(containers); do
		echo "---- $c: $(engine inspect --format '{{.State.Status}} (exit {{.State.ExitCode}})' "$c" 2>/dev/null)" >&2
		engine logs --tail 30 "$c" 2>&1 | grep -v 'systemd connection' >&2 || true
	done
}

up=no
rc=0
teardown() {
	rc=$?
	trap - EXIT INT TERM
	if [ "$up" = yes ]; then
		[ "$rc" -eq 0 ] || show_logs
		if [ -n "${WSGATE_CHECK_KEEP:-}" ]; then
			phase "topology kept: WSGATE_COMPOSE_PROJECT=$WSGATE_COMPOSE_PROJECT docker/compose.sh down" \
			    "(HAProxy on 127.0.0.1:$WSGATE_HTTP_PORT)"
		else
			phase "tear down"
			"$top/docker/compose.sh" down -t 3 >"$tmp/down.log" 2>&1 ||
			    { cat "$tmp/down.log" >&2; echo "check-docker: tear-down failed" >&2; }
			left=$(containers)
			# shellcheck disable=SC2086 # one word per container
			[ -z "$left" ] || engine rm -f $left >/dev/null 2>&1 || true
		fi
	fi
	rm -rf "$tmp"
	if [ "$rc" -eq 0 ]; then
		phase "check-docker passed"
	else
		phase "check-docker FAILED (exit $rc)${why:+: $why}" >&2
	fi
	exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

phase "compose up ($ENGINE, project $WSGATE_COMPOSE_PROJECT, HAProxy on 127.0.0.1:$WSGATE_HTTP_PORT)"
up=yes
"$top/docker/compose.sh" up -d --no-build >"$tmp/up.log" 2>&1 ||
    { grep -v 'systemd connection' "$tmp/up.log" >&2; fail "compose up"; }

# All five containers running (a replica that exits at once has a bad config or image).
want="redis wsgate1 wsgate2 wsgate3 haproxy"
if [ "${WSGATE_REDIS_MODE:-single}" = cluster ]; then
	want="$want redis-c1 redis-c2 redis-c3 redis-c4 redis-c5 redis-c6"
	: "${WSGATE_CHECKS:=health,echo,broadcast}"
fi
i=0
while :; do
	down=""
	for s in $want; do
		st=$(engine ps -a --filter "label=com.docker.compose.project=$WSGATE_COMPOSE_PROJECT" \
		    --filter "label=com.docker.compose.service=$s" --format '{{.Status}}')
		case "$st" in Up*) ;; *) down="$down $s(${st:-missing})" ;; esac
	done
	[ -n "$down" ] || break
	i=$((i + 1))
	[ "$i" -lt 30 ] || fail "containers not running:$down"
	sleep 1
done

phase "topology checks"
/usr/bin/python3 "$top/tests/docker/topology_test.py" --engine "$ENGINE" \
    --project "$WSGATE_COMPOSE_PROJECT" --http-port "$WSGATE_HTTP_PORT" \
    --stats-port "$WSGATE_STATS_PORT" ${WSGATE_CHECKS:+--checks "$WSGATE_CHECKS"} ||
    fail "topology checks (container logs above)"

# Cluster mode: the cluster was made, and each replica went through it (sharded pub/sub), not
# through the single Redis that stays up beside it.
if [ "${WSGATE_REDIS_MODE:-single}" = cluster ]; then
	phase "cluster mode checks"
	of() {
		engine ps -a --filter "label=com.docker.compose.project=$WSGATE_COMPOSE_PROJECT" \
		    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}'
	}
	engine logs "$(of redis-cluster-init)" 2>&1 | grep -q 'cluster made' ||
	    fail "redis-cluster-init did not make the cluster"
	for s in wsgate1 wsgate2 wsgate3; do
		engine logs "$(of "$s")" 2>&1 | grep -q 'redis broker: cluster' ||
		    fail "$s is not in cluster mode"
		engine logs "$(of "$s")" 2>&1 | grep -q 'redis cluster: map of 3 master' ||
		    fail "$s never read a map of 3 masters"
	done
	n=$(engine exec "$(of redis-c1)" redis-cli cluster info | tr -d '\r' |
	    sed -n 's/^cluster_size://p')
	[ "$n" = 3 ] || fail "cluster_size is '$n', not 3"
	phase "cluster mode: 3 masters, every replica on the cluster's map"
fi
