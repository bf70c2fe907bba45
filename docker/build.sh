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

work=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
ctx="$work/ctx"
mkdir "$ctx"

src=$(engine_copy_tree "$top" "$ctx" "${WSGATE_DOCKER_REF:-}") || engine_die "cannot copy the source tree"
rm -rf "$ctx/docker"
mkdir -p "$ctx/docker"
(cd "$top/docker" && tar -cf - .) | tar -C "$ctx/docker" -xf -
engine_log "context: $src, $(du -sh "$ctx" | cut -f1)"

build_one() { # image-name dockerfile: build, output to $work/image-name.log
	log="$work/$1.log"
	t0=$(date +%s)
	if [ "$ENGINE" = podman ]; then
		# OCI images (podman's default) drop HEALTHCHECK; the docker format keeps it.
		# Never pull: the base image is local (engine_podman_base).
		engine build --format docker --pull=never --layers -f "$ctx/$2" -t "$1" "$ctx" >"$log" 2>&1
	else
		engine build -f "$ctx/$2" -t "$1" "$ctx" >"$log" 2>&1
	fi || { echo "FAILED after $(($(date +%s) - t0))s" >>"$log"; return 1; }
	echo "built in $(($(date +%s) - t0))s" >>"$log"
}

# The three builds share only the base image: run them side by side (mostly apt downloads).
pids=""
for img in "$@"; do
	case "$img" in
	wsgate) build_one wsgate:local docker/Dockerfile & ;;
	redis) build_one wsgate-redis:local docker/redis.Dockerfile & ;;
	haproxy) build_one wsgate-haproxy:local docker/haproxy.Dockerfile & ;;
	esac
	pids="$pids $img=$!"
	engine_log "building $img (log: $work/*.log while it runs)"
done
rc=0
for p in $pids; do
	img=${p%%=*}
	name=$(case $img in wsgate) echo wsgate:local ;; *) echo "wsgate-$img:local" ;; esac)
	if wait "${p#*=}"; then
		engine_log "$name: $(tail -n 1 "$work/$name.log")"
		[ -z "${WSGATE_BUILD_VERBOSE:-}" ] || cat "$work/$name.log" >&2
	else
		engine_log "$name: build failed; its log:"
		cat "$work/$name.log" >&2
		rc=1
	fi
done
exit "$rc"
