#!/bin/sh
# tools/setup.sh - install wsgate's build and test dependencies (Debian 12), build it in ./build
# and, with --run, start it on the shipped configuration (etc/wsgate.ini).
#   tools/setup.sh [--run] [--no-deps] [configure options...]
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

# Build tools and libraries, then what the test suite talks to for real:
# redis-server, python3-websockets (+pytest), Node.js for the `ws` client, Chromium for the browser test,
# clang and its runtime for the fuzzers, Prometheus (promtool too) for the dashboard test.
PKGS="build-essential autoconf automake pkg-config \
libevent-dev libssl-dev libhiredis-dev libinih-dev check zlib1g-dev \
redis-server haproxy python3 python3-websockets python3-pytest nodejs npm chromium \
clang libclang-rt-14-dev openssl curl procps \
prometheus"

if [ "$deps" = yes ]; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	missing=""
	for p in $PKGS; do
		# nodejs/npm may come from elsewhere (e.g. nodesource); a working `node` is enough.
		case "$p" in nodejs|npm) command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && continue ;; esac
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		echo "setup: installing:$missing"
		$SUDO apt-get update -q
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
	fi
	if [ ! -d "$top/tests/node/node_modules/ws" ] || [ ! -d "$top/tests/node/node_modules/playwright-core" ]; then
		(cd "$top/tests/node" && npm ci --no-audit --no-fund)
	fi
fi

cd "$top"
[ -x configure ] || autoreconf -fi
mkdir -p build
cd build
if [ ! -f Makefile ] || [ $# -gt 0 ]; then
	../configure "$@"
fi
make -j"$(nproc)"

if [ "$run" = yes ]; then
	echo "setup: starting wsgate on etc/wsgate.ini (Ctrl-C to stop)"
	exec ./src/wsgate -c "$top/etc/wsgate.ini"
fi
