#!/bin/sh
# docker/build.sh - build the images of docker/docker-compose.yml: wsgate:local,
# wsgate-redis:local and wsgate-haproxy:local, with Docker or podman (docker/engine.sh).
#   docker/build.sh [wsgate|redis|haproxy ...]     (default: all three)
# The build context is a temporary copy of the repository's source files, never the work tree
# itself (no build/ directories, node_modules or object files go to the engine):
#   default                 git-tracked and new (not ignored) files as they are in the work tree;
#   WSGATE_DOCKER_REF=HEAD  the committed tree of that ref (`git archive`), e.g. while others edit;
#                           docker/ itself always comes from the work tree.
set -eu

ENGINE_PROG=build
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/docker/engine.sh"

[ $# -gt 0 ] || set -- wsgate redis haproxy
for img in "$@"; do
	case "$img" in wsgate|redis|haproxy) ;; *) engine_die "unknown image '$img' (wsgate, redis, haproxy)" ;; esac
done

[ -n "${ENGINE:-}" ] || engine_init

ctx=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-ctx.XXXXXX")
trap 'rm -rf "$ctx"' EXIT INT TERM

if [ -n "${WSGATE_DOCKER_REF:-}" ]; then
	git -C "$top" archive --format=tar "$WSGATE_DOCKER_REF" | tar -C "$ctx" -xf -
	rm -rf "$ctx/docker"
	src="$(git -C "$top" rev-parse --short "$WSGATE_DOCKER_REF") ($WSGATE_DOCKER_REF)"
else
	# Files deleted in the work tree but still tracked are skipped.
	(cd "$top" && git ls-files -z --cached --others --exclude-standard -- . ':!docker' |
	    xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
	    tar --null -T - -cf -) | tar -C "$ctx" -xf -
	src="work tree of $(git -C "$top" rev-parse --short HEAD)"
fi
mkdir -p "$ctx/docker"
(cd "$top/docker" && tar -cf - .) | tar -C "$ctx/docker" -xf -
engine_log "context: $src, $(du -sh "$ctx" | cut -f1)"

build_one() { # image-name dockerfile
	t0=$(date +%s)
	engine_log "building $1 from $2"
	if [ "$ENGINE" = podman ]; then
		# OCI images (podman's default) drop HEALTHCHECK; the docker format keeps it.
		# Never pull: the base image is local (engine_podman_base).
		engine build --format docker --pull=never --layers -f "$ctx/$2" -t "$1" "$ctx" >&2
	else
		engine build -f "$ctx/$2" -t "$1" "$ctx" >&2
	fi || engine_die "building $1 failed"
	engine_log "built $1 in $(($(date +%s) - t0))s"
}

for img in "$@"; do
	case "$img" in
	wsgate) build_one wsgate:local docker/Dockerfile ;;
	redis) build_one wsgate-redis:local docker/redis.Dockerfile ;;
	haproxy) build_one wsgate-haproxy:local docker/haproxy.Dockerfile ;;
	esac
done
