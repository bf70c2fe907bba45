# docker/engine.sh - choose the container engine for wsgate's images and compose topology:
# Docker when an engine answers, otherwise podman + podman-compose set up for these hosts.
#
# Sourced (POSIX sh) by docker/build.sh, docker/compose.sh and tests/docker/check-docker.sh.
# After `engine_init`: ENGINE is "docker" or "podman", and `engine ARGS` / `compose ARGS` run
# the engine and its compose tool. Why podman needs set-up here (docker/README.md has more):
#   - hard limits cannot be raised (20,000 open files), so podman's default ulimits fail:
#     a containers.conf passed in CONTAINERS_CONF sets nofile/nproc within them;
#   - the cgroup layout is hybrid v1, which crun refuses: the same file selects runc;
#   - service names must resolve (HAProxy finds the replicas, they find Redis): only the
#     netavark backend (with aardvark-dns) gives DNS; Debian's podman may have recorded CNI on
#     first use, whose bridge has no DNS here, so compose would come up "healthy" and resolve
#     nothing. The same file selects netavark, and engine_init checks podman took it;
#   - no registry can be reached, so `FROM debian:bookworm-slim` must find a local image:
#     engine_podman_base makes one with debootstrap once and caches its tarball.
# Settings: WSGATE_ENGINE=docker|podman forces an engine; WSGATE_PODMAN_STATE (default
# /var/tmp/wsgate-podman) keeps the base tarball; WSGATE_PODMAN_CONF_DIR (default: the state
# dir) receives containers.conf.

WSGATE_PODMAN_STATE=${WSGATE_PODMAN_STATE:-/var/tmp/wsgate-podman}
WSGATE_BASE_IMAGE=docker.io/library/debian:bookworm-slim

engine_log() {
	printf '%s: %s\n' "${ENGINE_PROG:-engine}" "$*" >&2
}

engine_die() {
	engine_log "error: $*"
	exit 1
}

# Run as root, through sudo when we are not.
engine_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Install the Debian packages named in $@ that are missing.
engine_apt_install() {
	missing=""
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
	done
	[ -n "$missing" ] || return 0
	engine_log "installing:$missing"
	engine_root apt-get update -q >&2 || return 1
	# shellcheck disable=SC2086 # one word per package
	# Wait for another apt (a shared host) rather than fail at once on its lock.
	engine_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
	    install -y -q --no-install-recommends $missing >&2
}

engine() {
	"$ENGINE" "$@"
}

compose() {
	# shellcheck disable=SC2086 # COMPOSE is a command and its leading words.
	$COMPOSE "$@"
}

# The containers.conf that makes podman work within this host's limits (see the header).
engine_podman_conf() {
	dir=${WSGATE_PODMAN_CONF_DIR:-$WSGATE_PODMAN_STATE}
	mkdir -p "$dir" || return 1
	cat >"$dir/containers.conf" <<-'EOF'
	# Written by wsgate's docker/engine.sh: podman within this host's hard limits and cgroups v1.
	[containers]
	default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

	[engine]
	runtime = "runc"

	# DNS by service name needs netavark + aardvark-dns; this overrides the CNI backend
	# podman may have recorded on first use (no DNS plugin there).
	[network]
	network_backend = "netavark"
	EOF
	CONTAINERS_CONF="$dir/containers.conf"
	export CONTAINERS_CONF
}

# The Debian mirror apt uses on this host, for debootstrap.
engine_debian_mirror() {
	m=""
	if [ -r /etc/apt/sources.list.d/debian.sources ]; then
		m=$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
	fi
	if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
		m=$(awk '$1 == "deb" && $0 ~ / bookworm / && $0 !~ /security/ {
			for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
	fi
	echo "${m:-http://deb.debian.org/debian}"
}

# Make debian:bookworm-slim locally (once): debootstrap minbase with this host's Debian sources,
# slimmed like the official image (no docs, man pages or locales), imported and tagged under the
# name an unchanged `FROM debian:bookworm-slim` looks for.
engine_podman_base() {
	if podman image exists "$WSGATE_BASE_IMAGE"; then
		return 0
	fi
	tarball="$WSGATE_PODMAN_STATE/debian-bookworm-minbase.tar"
	if [ ! -s "$tarball" ]; then
		engine_apt_install debootstrap || return 1
		mirror=$(engine_debian_mirror)
		engine_log "debootstrap bookworm from $mirror (once; 1-2 minutes)"
		engine_root mkdir -p "$WSGATE_PODMAN_STATE" || return 1
		rootfs="$WSGATE_PODMAN_STATE/rootfs.$$"
		engine_root rm -rf "$rootfs"
		if ! engine_root debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >&2; then
			engine_root rm -rf "$rootfs"
			return 1
		fi
		# apt inside builds uses the same Debian sources as this host (deb822 or one-line).
		if [ -r /etc/apt/sources.list.d/debian.sources ]; then
			engine_root cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/"
			engine_root rm -f "$rootfs/etc/apt/sources.list"
		fi
		engine_root sh -c "cat >'$rootfs/etc/dpkg/dpkg.cfg.d/slim'" <<-'EOF'
		path-exclude /usr/share/doc/*
		path-include /usr/share/doc/*/copyright
		path-exclude /usr/share/man/*
		path-exclude /usr/share/info/*
		path-exclude /usr/share/locale/*
		path-include /usr/share/locale/locale.alias
		EOF
		# Like the official image: packages never start services during a build.
		engine_root sh -c "printf '#!/bin/sh\\nexit 101\\n' >'$rootfs/usr/sbin/policy-rc.d' &&
		    chmod 755 '$rootfs/usr/sbin/policy-rc.d'"
		engine_root sh -c "cd '$rootfs' && rm -rf var/lib/apt/lists/* var/cache/apt/*.bin \
		    var/cache/apt/archives/*.deb usr/share/doc/* usr/share/man/* usr/share/info/* \
		    var/log/*.log"
		if ! engine_root sh -c "tar --numeric-owner -C '$rootfs' -cf '$tarball.tmp' . &&
		    mv '$tarball.tmp' '$tarball'"; then
			engine_root rm -rf "$rootfs" "$tarball.tmp"
			return 1
		fi
		engine_root rm -rf "$rootfs"
	fi
	engine_log "importing $tarball as $WSGATE_BASE_IMAGE"
	podman import --change 'CMD ["bash"]' "$tarball" localhost/debian:bookworm-slim >/dev/null &&
	    podman tag localhost/debian:bookworm-slim "$WSGATE_BASE_IMAGE"
}

# Copy the repository's source files at $1 into the empty directory $2, never the work tree
# itself (no build/ directories, node_modules or object files): git-tracked and new (not
# ignored) files as they are in the work tree, or with a ref in $3 the committed tree of that
# ref (`git archive`). Prints what was copied ("work tree of abc1234", "abc1234 (HEAD)").
engine_copy_tree() {
	if [ -n "${3:-}" ]; then
		git -C "$1" archive --format=tar "$3" | tar -C "$2" -xf - || return 1
		echo "$(git -C "$1" rev-parse --short "$3") ($3)"
	else
		# Files deleted in the work tree but still tracked are skipped.
		# shellcheck disable=SC2016 # $f belongs to the inner sh
		(cd "$1" && git ls-files -z --cached --others --exclude-standard -- . |
		    xargs -0 sh -c 'for f; do if [ -e "$f" ]; then printf "%s\0" "$f"; fi; done' sh |
		    tar --null -T - -cf -) | tar -C "$2" -xf - || return 1
		echo "work tree of $(git -C "$1" rev-parse --short HEAD)"
	fi
}

# Pick and prepare the engine. Docker wins when its daemon answers (`docker info`).
engine_init() {
	want=${WSGATE_ENGINE:-}
	if [ -z "$want" ]; then
		if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
			want=docker
		else
			want=podman
		fi
	fi
	case "$want" in
	docker)
		ENGINE=docker
		if docker compose version >/dev/null 2>&1; then
			COMPOSE="docker compose"
		elif command -v docker-compose >/dev/null 2>&1; then
			COMPOSE=docker-compose
		else
			engine_die "docker answers but neither 'docker compose' nor docker-compose is installed"
		fi
		;;
	podman)
		ENGINE=podman
		COMPOSE=podman-compose
		# catatonit is podman's --init (compose "init: true"); netavark needs iptables;
		# aardvark-dns answers service names; slirp4netns is podman's rootless network.
		engine_apt_install podman podman-compose runc catatonit netavark aardvark-dns \
		    slirp4netns iptables || engine_die "cannot install podman and its helpers"
		engine_podman_conf || engine_die "cannot write containers.conf"
		backend=$(podman info --format '{{.Host.NetworkBackend}}' 2>/dev/null) || backend=""
		[ "$backend" = netavark ] || engine_die "podman uses the network backend" \
		    "'${backend:-unknown}', not netavark, despite $CONTAINERS_CONF: service names" \
		    "would not resolve (no DNS). Install netavark and aardvark-dns, or set" \
		    "network_backend = \"netavark\" in /etc/containers/containers.conf"
		engine_podman_base || engine_die "cannot make the base image $WSGATE_BASE_IMAGE"
		;;
	*)
		engine_die "WSGATE_ENGINE must be docker or podman, not '$want'"
		;;
	esac
	export ENGINE COMPOSE
	engine_log "using $ENGINE ($COMPOSE)"
}
