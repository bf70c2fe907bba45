#!/bin/bash
# tests/fresh/inside.sh - runs as root inside the brand-new debian:bookworm-slim container of
# tests/fresh/run-readme-commands.sh (which mounts it at /harness, never into the repository).
# Unpacks the repository from stdin into /root/wsgate, then runs the README's two commands
# exactly as given in WSGATE_CMD1 / WSGATE_CMD2, the way a new user does: the first in the
# background (it leaves wsgate in the foreground), waits for /healthz on 127.0.0.1:8080, runs
# the second, stops wsgate. Logs go to /harness-out; exit 0 only if both commands did their job
# and the test command ran every test, none skipped.
set -u

out=/harness-out
t0=$(date +%s)
say() { printf '[fresh %4ss] %s\n' "$(($(date +%s) - t0))" "$*"; }
fail() {
	say "FAILED: $*"
	exit 1
}

{ mkdir -p /root/wsgate && tar -C /root/wsgate -xf -; } || fail "cannot unpack the repository"
# The container is thrown away: dpkg need not fsync each of the ~660 packages the first
# command installs (on a loaded host that is most of its time). A harness setting, not the
# project's: the commands themselves run verbatim. WSGATE_FRESH_UNSAFE_IO=0 turns it off.
if [ "${WSGATE_FRESH_UNSAFE_IO:-1}" != 0 ]; then
	echo force-unsafe-io >/etc/dpkg/dpkg.cfg.d/harness-unsafe-io
fi
cd /root/wsgate || exit 1
say "repository unpacked: $(find . -type f | wc -l) files; $(. /etc/os-release; echo "$PRETTY_NAME");" \
    "node: $(command -v node || echo none), chromium: $(command -v chromium || echo none)"

# GET /healthz on the first command's listener (etc/wsgate.ini: 0.0.0.0:8080), with bash only:
# the bare image has neither curl nor wget until the first command installs them.
healthz() {
	exec 3<>/dev/tcp/127.0.0.1/8080 || return 1
	printf 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
	IFS= read -r -t 2 status <&3
	exec 3<&-
	case ${status:-} in "HTTP/1."[01]" 200"*) return 0 ;; *) return 1 ;; esac
}

# ---- the first command, in the background (its own session, so it can be stopped whole) ----
say "1st command: $WSGATE_CMD1"
setsid bash -c "$WSGATE_CMD1" >"$out/first.log" 2>&1 </dev/null &
first=$!
limit=${WSGATE_FRESH_SETUP_TIMEOUT:-2400}
while ! healthz 2>/dev/null; do
	if ! kill -0 "$first" 2>/dev/null; then
		wait "$first"
		rc=$?
		tail -n 40 "$out/first.log"
		fail "the 1st command exited $rc before /healthz answered (log above, whole in first.log)"
	fi
	if [ $(($(date +%s) - t0)) -gt "$limit" ]; then
		tail -n 40 "$out/first.log"
		kill -TERM -- "-$first" 2>/dev/null
		fail "/healthz did not answer within ${limit}s of the 1st command"
	fi
	sleep 2
done
t1=$(date +%s)
first_s=$((t1 - t0))
say "1st command: wsgate answers /healthz on 127.0.0.1:8080 after ${first_s}s"
grep -E '^setup: (installing|WARNING|note|npm ci)' "$out/first.log" | cut -c1-300
warnings=$(grep -c '^setup: WARNING' "$out/first.log")
say "installed: $(grep -cE '^Setting up ' "$out/first.log") Debian packages;" \
    "node $(node -v 2>/dev/null) ($(dpkg-query -W -f='${Version}' nodejs 2>/dev/null || echo '?'));" \
    "tests/node: $(cd tests/node && node -p 'Object.entries(require("./package-lock.json").packages).filter(([k]) => k).map(([k, v]) => k.replace("node_modules/", "") + "@" + v.version).join(" ")' 2>/dev/null)"

# ---- the second command, while wsgate runs ----
say "2nd command: $WSGATE_CMD2"
bash -c "$WSGATE_CMD2" >"$out/second.log" 2>&1 </dev/null
rc2=$?
t2=$(date +%s)
second_s=$((t2 - t1))
cp build/test-suite.log build/tests/integration/run-integration.sh.log "$out/" 2>/dev/null
grep -E '^(# (TOTAL|PASS|SKIP|XFAIL|FAIL|XPASS|ERROR):|(PASS|FAIL|SKIP|ERROR): )' "$out/second.log"
unit=$(cat build/tests/unit/*.log 2>/dev/null | sed -nE 's/^[0-9]+%: Checks: ([0-9]+), Failures: ([0-9]+), Errors: ([0-9]+).*/\1 \2 \3/p' |
	awk '{n += $1; bad += $2 + $3} END {printf "%d checks, %d failed", n, bad}')
pyline=$(grep -hE '^=+ .* in [0-9.]+s' build/tests/integration/run-integration.sh.log 2>/dev/null | tail -n 1)
say "2nd command: exit $rc2 after ${second_s}s; unit suites: $unit; integration: ${pyline:-no pytest summary}"
grep -A12 'run-integration.sh: FAIL' "$out/second.log" | head -n 14
# pytest's short summary and its assertion lines: a red run names the test and says why.
grep -hE '^(FAILED|ERROR) ' build/tests/integration/run-integration.sh.log 2>/dev/null | head -n 20
grep -hE '^E  ' build/tests/integration/run-integration.sh.log 2>/dev/null | head -n 30 | cut -c1-300

# ---- stop wsgate (the first command exec'd it), as Ctrl-C would, and see it exit ----
kill -TERM -- "-$first" 2>/dev/null
i=0
while kill -0 "$first" 2>/dev/null && [ "$i" -lt 30 ]; do
	sleep 1
	i=$((i + 1))
done
if kill -0 "$first" 2>/dev/null; then
	kill -KILL -- "-$first" 2>/dev/null
	fail "wsgate did not exit within 30s of SIGTERM"
fi
wait "$first"
rc1=$?
say "wsgate stopped on SIGTERM: exit $rc1 after ${i}s"

status=0
[ "$rc2" -eq 0 ] || { say "FAILED: the 2nd command exited $rc2 (test-suite.log and run-integration.sh.log in $out)"; status=1; }
[ "$rc1" -eq 0 ] || { say "FAILED: wsgate exited $rc1 on SIGTERM"; status=1; }
[ "$warnings" -eq 0 ] || { say "FAILED: the 1st command warned $warnings times (above)"; status=1; }
case "$pyline" in
*passed*) ;;
*) say "FAILED: the integration suite printed no pytest summary"; status=1 ;;
esac
case "$pyline" in
*skipped*|*deselected*|*xfail*) say "FAILED: tests were left out: $pyline"; status=1 ;;
esac
if grep -qE '^# (SKIP|XFAIL|FAIL|ERROR): *[1-9]' "$out/second.log"; then
	say "FAILED: make check did not pass every test"
	status=1
fi
say "timings: 1st command ${first_s}s (to /healthz), 2nd command ${second_s}s, total $(($(date +%s) - t0))s"
exit "$status"
