#!/bin/sh
# tools/setup.sh - install wsgate's build and test dependencies (Debian 12), build it in ./build
# and, with --run, start it on the shipped configuration (etc/wsgate.ini).
#   tools/setup.sh [--run] [--no-deps] [configure options...]
# Build dependencies are required: a missing one stops here, naming the fix. Test-only ones
# (Node.js and its modules, Chromium, redis-server, HAProxy, pytest...) are not: wsgate needs
# none of them, so it is still built (and started with --run); what cannot run is listed, and
# `make -C build check` then fails naming the same missing piece. Without --run, setup exits 1
# after the build when the test suite could not run.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
run=no
deps=yes
while [ $# -gt 0 ]; do
	case "$1" in
	--run) run=yes; shift ;;
	--no-deps) deps=no; shift ;;
	*) break ;;
	esac
done

# Build tools and libraries (configure checks the libraries' versions).
BUILD_PKGS="build-essential autoconf automake pkg-config \
libevent-dev libssl-dev libhiredis-dev libinih-dev check zlib1g-dev liburing-dev"
# What the test suite talks to for real: redis-server, HAProxy, python3-websockets (+pytest),
# redis-sentinel for the failover tests (they fall back to `redis-server --sentinel`),
# Node.js for the `ws` client, Chromium for the browser tests, the openssl CLI for test
# certificates, clang and its runtime for the fuzzers, Prometheus (promtool too) for the
# dashboard test; clang-format-14 and lcov for make check-format and make coverage.
TEST_PKGS="redis-server redis-sentinel haproxy python3 python3-websockets python3-pytest nodejs npm chromium \
clang libclang-rt-14-dev openssl curl procps prometheus clang-format-14 lcov"

say() { echo "setup: $*"; }
die() {
	echo "setup: error: $*" >&2
	exit 1
}
# Problems that stop (part of) the test suite, not the build: one line each, "what: fix".
problems=""
problem() {
	problems="$problems
  - $*"
	echo "setup: WARNING: $*" >&2
}

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing_pkgs() {
	m=""
	for p in "$@"; do
		# nodejs/npm may come from elsewhere (e.g. nodesource); a working `node` is enough.
		case "$p" in nodejs|npm) command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && continue ;; esac
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || m="$m $p"
	done
	echo "$m"
}
apt_install() {
	# Wait for another apt on a shared machine rather than fail on its lock at once.
	# shellcheck disable=SC2086 # one word per package
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -q \
	    --no-install-recommends "$@"
}

if [ "$deps" = yes ]; then
	command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script installs Debian 12 packages" \
	    "(on another system install the packages it names, then run it with --no-deps)"
	# shellcheck disable=SC2086 # one word per package
	missing=$(missing_pkgs $BUILD_PKGS $TEST_PKGS)
	if [ -n "$missing" ]; then
		say "installing:$missing"
		$SUDO apt-get update -q || die "apt-get update failed: check the network and /etc/apt/sources.list*"
	fi
	# shellcheck disable=SC2086
	missing=$(missing_pkgs $BUILD_PKGS)
	if [ -n "$missing" ]; then
		# shellcheck disable=SC2086
		apt_install $missing || die "cannot install the build dependencies:$missing" \
		    "(fix apt, then run tools/setup.sh again)"
	fi
	# shellcheck disable=SC2086
	missing=$(missing_pkgs $TEST_PKGS)
	# shellcheck disable=SC2086
	if [ -n "$missing" ] && ! apt_install $missing; then
		# One at a time, to name what cannot be installed and keep the rest.
		for p in $missing; do
			apt_install "$p" >/dev/null 2>&1 || problem "Debian package $p cannot be installed" \
			    "(apt-get install $p failed): the tests that use it will fail"
		done
	fi
fi

# ---- version checks: the build's tools ----
for t in cc make autoreconf pkg-config; do
	command -v "$t" >/dev/null 2>&1 || die "$t not found: apt-get install $BUILD_PKGS"
done
if [ ! -x "$top/configure" ]; then
	# configure.ac needs autoconf 2.69 or later (Debian 12 has 2.71).
	av=$(autoconf --version | sed -n '1s/.* \([0-9][0-9.]*\)$/\1/p')
	case "$av" in
	2.6[0-8]*|2.[0-5]*|1.*) die "autoconf $av is too old (2.69 or later): apt-get install autoconf" ;;
	esac
fi

# ---- version checks: the test suite's tools (warnings: wsgate itself needs none of them) ----
node_min=$(sed -n 's/.*"node": *">= *\([0-9][0-9]*\).*/\1/p' "$top/tests/node/package.json" | head -n 1)
node_ok=no
if ! command -v node >/dev/null 2>&1; then
	problem "node not found (Node ${node_min}+ runs the Node ws and Chromium tests): apt-get install nodejs npm"
else
	nv=$(node -p 'process.versions.node' 2>/dev/null || echo 0)
	if [ "${nv%%.*}" -lt "${node_min:-18}" ]; then
		problem "node $nv is too old (tests/node needs ${node_min}+): Debian 12's nodejs (18.x) or newer"
	else
		node_ok=yes
	fi
fi
# The modules in tests/node/node_modules: exit 2 when one is missing or refuses this node
# (its "engines"), 1 when one differs from what package-lock.json pins.
modules_check() {
	# shellcheck disable=SC2016 # JavaScript, not shell
	(cd "$top/tests/node" && node -e '
		const l = require("./package-lock.json").packages;
		const major = +process.versions.node.split(".")[0];
		let drift = "";
		for (const k of Object.keys(l)) {
			if (!k) continue;
			let p;
			try { p = require("./" + k + "/package.json"); } catch (e) {
				console.log(`${k} is missing`); process.exit(2);
			}
			const min = /^>=\s*(\d+)/.exec((p.engines || {}).node || "");
			if (min && major < +min[1]) {
				console.log(`${k} ${p.version} needs node ${min[1]}+, this is ${process.versions.node}`);
				process.exit(2);
			}
			if (p.version !== l[k].version) drift = `${k} is ${p.version}, the lock pins ${l[k].version}`;
		}
		if (drift) { console.log(drift); process.exit(1); }') 2>&1
}
if [ "$node_ok" = yes ]; then
	rc=0
	why=$(modules_check) || rc=$?
	if [ "$rc" -ne 0 ] && [ "$deps" = yes ] && command -v npm >/dev/null 2>&1; then
		say "npm ci in tests/node ($why)"
		if (cd "$top/tests/node" && npm ci --no-audit --no-fund); then
			rc=0
			why=$(modules_check) || rc=$?
		else
			rc=2
			why="npm ci failed (see above: network, proxy or registry)"
		fi
	fi
	case "$rc" in
	0) ;;
	1) say "note: tests/node/node_modules differs from package-lock.json ($why): cd tests/node && npm ci" ;;
	*) problem "tests/node modules unusable ($why): cd tests/node && npm ci" ;;
	esac
fi
chromium=${WSGATE_CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || problem "$chromium not found (the browser tests drive it headless): apt-get install chromium"
/usr/bin/python3 -c 'import sys, websockets, pytest
sys.exit(int(websockets.__version__.split(".")[0]) < 10)' 2>/dev/null ||
    problem "Debian's python3 lacks websockets 10+ or pytest (the integration suite's runner):" \
        "apt-get install python3-websockets python3-pytest"
for t in redis-server haproxy openssl; do
	command -v "$t" >/dev/null 2>&1 || problem "$t not found (tests start their own): apt-get install $t"
done

# ---- build ----
cd "$top"
[ -x configure ] || autoreconf -fi
mkdir -p build
cd build
if [ ! -f Makefile ] || [ $# -gt 0 ]; then
	../configure "$@"
fi
make -j"$(nproc)"

if [ -n "$problems" ]; then
	echo >&2
	echo "setup: wsgate is built, but the test suite cannot fully run:$problems" >&2
	echo "setup: \`make -C build check\` will fail on these until they are fixed." >&2
	echo >&2
	[ "$run" = yes ] || exit 1
fi

if [ "$run" = yes ]; then
	echo "setup: starting wsgate on etc/wsgate.ini (Ctrl-C to stop)"
	exec ./src/wsgate -c "$top/etc/wsgate.ini"
fi
