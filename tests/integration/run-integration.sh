#!/bin/sh
# run-integration.sh - runs the integration suite (pytest, Debian's python3) against the built
# wsgate. `make check` calls it with WSGATE_BIN (the binary) and WSGATE_SRCDIR (the source
# tree) set. Nothing is written into the source tree, which distcheck makes read-only: configs,
# logs and pytest's temp files go to a fresh temp dir, removed afterwards.
# Extra arguments are pytest options placed before the test dir (e.g. -k utf8 -x).
set -u

here=$(cd "$(dirname "$0")" && pwd)
: "${WSGATE_SRCDIR:=$(cd "$here/../.." && pwd)}"
: "${WSGATE_BIN:=$WSGATE_SRCDIR/build/src/wsgate}"
export WSGATE_SRCDIR WSGATE_BIN

# Debian's python3 carries python3-pytest and python3-websockets (not a pyenv one on PATH).
PYTHON=${WSGATE_PYTHON:-/usr/bin/python3}

if [ ! -x "$WSGATE_BIN" ]; then
	echo "run-integration.sh: WSGATE_BIN=$WSGATE_BIN is not an executable file" >&2
	exit 1
fi

# ---- preflight: every test runs, none is skipped for the environment. What a test needs and
# this machine lacks is named here, before and after the run (on the console too: `make check`
# hands fd 9 to its stderr, AM_TESTS_FD_REDIRECT), and the run fails even if a -k filter
# happened to leave out the tests concerned.
problems=""
problem() {
	problems="$problems
  - $*"
}
node_min=$(sed -n 's/.*"node": *">= *\([0-9][0-9]*\).*/\1/p' "$WSGATE_SRCDIR/tests/node/package.json" | head -n 1)
node_modules=${WSGATE_NODE_MODULES:-$WSGATE_SRCDIR/tests/node/node_modules}
if ! "$PYTHON" -c 'import pytest' 2>/dev/null; then
	problem "$PYTHON has no pytest (runs this suite): apt-get install python3-pytest"
fi
if ! "$PYTHON" -c 'import sys, websockets; sys.exit(int(websockets.__version__.split(".")[0]) < 10)' 2>/dev/null; then
	problem "$PYTHON lacks websockets 10+ (Python client tests): apt-get install python3-websockets"
fi
if ! command -v node >/dev/null 2>&1; then
	problem "node not found (Node ws and Chromium tests): apt-get install nodejs npm, then tools/setup.sh"
else
	nv=$(node -p 'process.versions.node' 2>/dev/null || echo 0)
	[ "${nv%%.*}" -ge "${node_min:-18}" ] ||
	    problem "node $nv is too old (tests/node/package.json needs ${node_min}+): Debian 12's nodejs or newer"
	for m in ws playwright-core; do
		pj="$node_modules/$m/package.json"
		if [ ! -f "$pj" ]; then
			problem "node module $m not installed in $node_modules (Node/Chromium tests): cd tests/node && npm ci (tools/setup.sh does it)"
			continue
		fi
		need=$(sed -n 's/.*"node": *">= *\([0-9][0-9]*\).*/\1/p' "$pj" | head -n 1)
		[ -z "$need" ] || [ "${nv%%.*}" -ge "$need" ] ||
		    problem "node module $m in $node_modules needs node $need+, this is $nv: cd tests/node && npm ci (package-lock.json pins versions for node $node_min+)"
	done
fi
chromium=${WSGATE_CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || problem "$chromium not found (browser tests): apt-get install chromium"
for t in redis-server haproxy openssl prometheus:prometheus promtool:prometheus; do
	PATH="$PATH:/usr/sbin:/sbin" command -v "${t%%:*}" >/dev/null 2>&1 ||
	    problem "${t%%:*} not found (the tests start their own): apt-get install ${t#*:}"
done
report() {
	[ -n "$problems" ] || return 0
	msg="run-integration.sh: FAIL: this machine lacks what some tests need (they fail, none is skipped):$problems
run-integration.sh: tools/setup.sh installs all of it on Debian 12."
	echo "$msg"
	{ echo "$msg" >&9; } 2>/dev/null || true
}
report

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-it.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# No bytecode or cache in the source tree; temp files under $tmp.
export PYTHONDONTWRITEBYTECODE=1
export TMPDIR="$tmp"

cd "$tmp" || exit 1
# A hard bound far above the suite's normal run (about 10 minutes idle, longer under ASan or
# on a loaded machine), so a hang cannot stall CI.
timeout --kill-after=15 2400 "$PYTHON" -m pytest -p no:cacheprovider -v -rfEs \
	--basetemp="$tmp/pytest" --rootdir="$WSGATE_SRCDIR/tests/integration" \
	"$@" "$WSGATE_SRCDIR/tests/integration"
rc=$?
report
[ -z "$problems" ] || [ "$rc" -ne 0 ] || rc=1
exit "$rc"
