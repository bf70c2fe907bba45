#!/bin/sh
# tests/fresh/run-readme-commands.sh - the README's "Two commands", verbatim, where a new user
# runs them: a brand-new debian:bookworm-slim container holding nothing but the repository, as
# root, apt reaching Debian's mirror and npm its registry, with Debian's own nodejs. So a CI
# machine that happens to have newer tools can never hide a fresh-machine failure. .ci/run
# calls it; run it by hand the same way (root or sudo: podman is set up by docker/engine.sh).
#
# The commands are read from README.md's "## Two commands" section (its ```sh blocks, one
# command each), never copied here, so README and CI cannot drift. tests/fresh/inside.sh runs
# them in the container: the first in the background until /healthz answers, then the second,
# then stops wsgate; every test must run and pass, none skipped.
# Settings:
#   WSGATE_FRESH_REF=HEAD        the committed tree of a ref instead of the work tree's files
#   WSGATE_FRESH_APT_CACHE=0     no apt download cache (default: kept in the podman state dir,
#                                /var/tmp/wsgate-podman/apt-archives: apt checks every .deb
#                                against the signed indexes it fetches fresh, so a stale or
#                                damaged file is fetched again, never installed)
#   WSGATE_FRESH_OUT=DIR         keep the logs (first.log, second.log, test-suite.log...) there
#   WSGATE_FRESH_SETUP_TIMEOUT=S how long the first command may take (default 2400 s)
#   WSGATE_FRESH_UNSAFE_IO=0     let dpkg fsync in the throw-away container (default: not)
# The harness, not the project, passes in this host's egress: when the host trusts local CAs
# (/usr/local/share/ca-certificates/*.crt, e.g. a TLS-inspecting proxy to the registries), the
# container gets them for npm (NODE_EXTRA_CA_CERTS) and nothing else; a real machine needs none.
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
ENGINE_PROG=fresh
. "$top/docker/engine.sh"

t_start=$(date +%s)
phase() { printf '==== [%4ss] %s\n' "$(($(date +%s) - t_start))" "$*"; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-fresh.XXXXXX")
name=wsgate-fresh-$$
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	rc=$?
	trap - EXIT INT TERM
	[ -z "${ENGINE:-}" ] || engine rm -f "$name" >/dev/null 2>&1 || true
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
WSGATE_PODMAN_CONF_DIR=$tmp
export WSGATE_PODMAN_CONF_DIR

# ---- the README's two commands: the line of each ```sh block in "## Two commands" ----
awk '/^## / { sec = ($0 == "## Two commands") }
     sec && /^```/ { blk = !blk; next }
     sec && blk && NF' "$top/README.md" >"$tmp/commands"
[ "$(wc -l <"$tmp/commands")" -eq 2 ] ||
    engine_die "README.md's \"## Two commands\" must hold two \`\`\`sh blocks of one command each; found: $(cat "$tmp/commands")"
cmd1=$(sed -n 1p "$tmp/commands")
cmd2=$(sed -n 2p "$tmp/commands")

phase "engine"
engine_init

out=${WSGATE_FRESH_OUT:-$tmp/out}
mkdir -p "$out" "$tmp/harness"
out=$(cd "$out" && pwd)
cp "$top/tests/fresh/inside.sh" "$tmp/harness/"
set -- -v "$tmp/harness:/harness:ro" -v "$out:/harness-out"
if [ "${WSGATE_FRESH_APT_CACHE:-1}" != 0 ]; then
	cache=$WSGATE_PODMAN_STATE/apt-archives
	engine_root mkdir -p "$cache/partial"
	set -- "$@" -v "$cache:/var/cache/apt/archives"
	phase "apt download cache: $cache ($(du -sh "$cache" 2>/dev/null | cut -f1))"
fi
cas=$(ls /usr/local/share/ca-certificates/*.crt 2>/dev/null || true)
if [ -n "$cas" ]; then
	# shellcheck disable=SC2086 # one word per file
	cat $cas >"$tmp/harness/extra-ca.pem"
	set -- "$@" -e NODE_EXTRA_CA_CERTS=/harness/extra-ca.pem
	phase "harness: this host's local CAs passed to npm in the container: $(echo "$cas" | tr "\n" " ")"
fi

mkdir "$tmp/repo"
src=$(engine_copy_tree "$top" "$tmp/repo" "${WSGATE_FRESH_REF:-}") || engine_die "cannot copy the source tree"
phase "$ENGINE run $WSGATE_BASE_IMAGE, root, repository only ($src, $(du -sh "$tmp/repo" | cut -f1))"
phase "README command 1: $cmd1"
phase "README command 2: $cmd2"

# A real machine's /dev/shm is large; a container's is 64 MiB, which Chromium outgrows.
# podman never pulls: its base image is local (engine_podman_base).
pull=""
[ "$ENGINE" != podman ] || pull=--pull=never
rc=0
# shellcheck disable=SC2086 # $pull is empty or one word
tar -C "$tmp/repo" -cf - . |
    engine run -i --name "$name" $pull --shm-size=512m --user root \
    -e WSGATE_CMD1="$cmd1" -e WSGATE_CMD2="$cmd2" \
    -e WSGATE_FRESH_SETUP_TIMEOUT="${WSGATE_FRESH_SETUP_TIMEOUT:-2400}" \
    -e WSGATE_FRESH_UNSAFE_IO="${WSGATE_FRESH_UNSAFE_IO:-1}" \
    "$@" "$WSGATE_BASE_IMAGE" bash /harness/inside.sh || rc=$?
if [ "$rc" -eq 0 ]; then
	phase "fresh Debian 12: the README's two commands passed"
else
	phase "fresh Debian 12: FAILED (exit $rc); logs: $out/{first,second}.log, test-suite.log"
	if [ -z "${WSGATE_FRESH_OUT:-}" ]; then
		keep=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-fresh-logs.XXXXXX")
		cp -r "$out/." "$keep/"
		phase "logs kept in $keep"
	fi
fi
exit "$rc"
