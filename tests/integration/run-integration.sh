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

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-it.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# No bytecode or cache in the source tree; temp files under $tmp.
export PYTHONDONTWRITEBYTECODE=1
export TMPDIR="$tmp"

cd "$tmp" || exit 1
# A hard bound far above the suite's normal ~2-3 minutes, so a hang cannot stall CI.
timeout --kill-after=15 900 "$PYTHON" -m pytest -p no:cacheprovider -v -rfEs \
	--basetemp="$tmp/pytest" --rootdir="$WSGATE_SRCDIR/tests/integration" \
	"$@" "$WSGATE_SRCDIR/tests/integration"
exit $?
