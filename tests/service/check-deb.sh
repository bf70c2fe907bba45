#!/bin/sh
# tests/service/check-deb.sh - the Debian package, end to end (CI stage; runnable by hand):
#   1. a fresh Debian 12 container runs the README's commands (apt-get build-dep ./ and
#      dpkg-buildpackage -us -uc -b) on the source tree;
#   2. lintian checks the .deb on this host: any E: fails, W: lines are printed;
#   3. a second fresh container gets only the .deb installed, and tests/service/deb-checks.sh
#      checks it without systemd: wsgate -t on the installed config, the user, the conffile,
#      the enabled unit, /healthz when started as the wsgate user, remove, purge;
#   4. with podman, the same image booted by systemd (tests/service/deb-systemd-checks.sh):
#      Type=notify readiness, the sandbox, reload, journald priorities, wsgate.socket, stop
#      (WSGATE_DEB_SYSTEMD=0 skips it).
# The engine and base image come from docker/engine.sh (podman set up for this host when no
# Docker engine answers; needs root or sudo). Settings: WSGATE_DEB_KEEP=DIR copies the .debs
# there; WSGATE_DOCKER_REF=HEAD builds the committed tree instead of the work tree's files.
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
ENGINE_PROG=check-deb
. "$top/docker/engine.sh"

t_start=$(date +%s)
phase() {
	printf '==== [%4ss] %s\n' "$(($(date +%s) - t_start))" "$*"
}
fail() {
	printf '==== [%4ss] check-deb FAILED: %s\n' "$(($(date +%s) - t_start))" "$*" >&2
	exit 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-check-deb.XXXXXX")
WSGATE_PODMAN_CONF_DIR=$tmp
export WSGATE_PODMAN_CONF_DIR
image=wsgate-deb-check:$$
container=""
cleanup() {
	rc=$?
	[ -z "$container" ] || engine rm -f "$container" >/dev/null 2>&1 || true
	engine rmi -f "$image" "$image-systemd" >/dev/null 2>&1 || true
	rm -rf "$tmp"
	if [ "$rc" -eq 0 ]; then phase "check-deb passed"; else phase "check-deb FAILED (exit $rc)"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

phase "engine"
engine_init
engine_apt_install lintian || fail "cannot install lintian"

# The build context: the source files as docker/build.sh takes them (tracked and new, not
# ignored: no build directories or node_modules), or a committed ref.
phase "context (${WSGATE_DOCKER_REF:-work tree})"
ctx="$tmp/ctx"
mkdir "$ctx"
if [ -n "${WSGATE_DOCKER_REF:-}" ]; then
	git -C "$top" archive --format=tar "$WSGATE_DOCKER_REF" | tar -C "$ctx" -xf -
else
	# shellcheck disable=SC2016 # $f belongs to the inner sh
	(cd "$top" && git ls-files -z --cached --others --exclude-standard |
	    xargs -0 sh -c 'for f; do if [ -e "$f" ]; then printf "%s\0" "$f"; fi; done' sh |
	    tar --null -T - -cf -) | tar -C "$ctx" -xf -
fi

phase "build the .deb in a fresh Debian 12 container, install it in another"
if [ "$ENGINE" = podman ]; then
	set -- --format docker --pull=never --layers
else
	set --
fi
engine build "$@" --target installed -f "$ctx/tests/service/deb.Dockerfile" -t "$image" "$ctx" \
    >"$tmp/build.log" 2>&1 ||
    { tail -n 60 "$tmp/build.log" >&2; fail "image build (log above)"; }
grep -E 'dpkg-deb: building package|Setting up wsgate' "$tmp/build.log" || true

phase "lintian"
container=$(engine create "$image" true)
mkdir "$tmp/debs"
engine cp "$container:/debs/." "$tmp/debs/" || fail "cannot copy the .debs out"
engine rm -f "$container" >/dev/null
container=""
deb=$(ls "$tmp"/debs/wsgate_*_amd64.deb)
[ -n "${WSGATE_DEB_KEEP:-}" ] && mkdir -p "$WSGATE_DEB_KEEP" && cp "$tmp"/debs/*.deb "$WSGATE_DEB_KEEP/"
# Errors fail the stage; warnings are printed (README lists the accepted ones).
lintian --tag-display-limit 0 "$deb" >"$tmp/lintian.log" 2>&1 || true
grep -v 'running with root privileges' "$tmp/lintian.log" >"$tmp/lintian.tags" || true
if [ -s "$tmp/lintian.tags" ]; then cat "$tmp/lintian.tags"; else echo "lintian: no tags"; fi
if grep -q '^E: ' "$tmp/lintian.log"; then
	fail "lintian reports errors"
fi

phase "installed package checks (no systemd)"
engine run --rm -v "$top/tests/service/deb-checks.sh:/deb-checks.sh:ro" "$image" \
    bash /deb-checks.sh || fail "installed package checks"

# systemd as PID 1 needs podman's --systemd mode (Docker has none): the unit as it really runs.
if [ "$ENGINE" != podman ] || [ "${WSGATE_DEB_SYSTEMD:-1}" = 0 ]; then
	phase "under systemd: skipped (needs podman; WSGATE_DEB_SYSTEMD=${WSGATE_DEB_SYSTEMD:-1})"
	exit 0
fi
phase "under systemd (podman --systemd=always): readiness, sandbox, reload, socket activation"
engine build --format docker --pull=never --layers --target systemd \
    -f "$ctx/tests/service/deb.Dockerfile" -t "$image-systemd" "$ctx" >"$tmp/build-systemd.log" 2>&1 ||
    { tail -n 40 "$tmp/build-systemd.log" >&2; fail "systemd image build"; }
container=$(engine run -d --systemd=always \
    -v "$top/tests/service/deb-systemd-checks.sh:/deb-systemd-checks.sh:ro" "$image-systemd") ||
    fail "cannot boot the systemd container"
engine exec "$container" bash /deb-systemd-checks.sh || fail "checks under systemd"
