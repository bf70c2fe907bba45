#!/bin/bash
# tests/service/deb-systemd-checks.sh - inside a container booted by systemd with the wsgate .deb
# installed (tests/service/check-deb.sh): the unit as systemd runs it. Type=notify readiness,
# the sandboxed user and capabilities, reload (RELOADING/READY), journald priorities, socket
# activation, stop.
set -uo pipefail

step() { printf 'deb-systemd-checks: %s\n' "$*"; }
fail() {
	printf 'deb-systemd-checks: FAILED: %s\n' "$*" >&2
	systemctl status wsgate --no-pager >&2 || true
	journalctl -u wsgate --no-pager | tail -n 30 >&2
	exit 1
}
prop() { systemctl show wsgate -p "$1" --value 2>/dev/null; } # quiet while systemd boots
healthz() {
	{ exec 3<>/dev/tcp/127.0.0.1/8080; } 2>/dev/null || return 1
	printf 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
	IFS= read -r -t 2 status <&3 || status=""
	exec 3<&-
	case $status in "HTTP/1."[01]" 200"*) return 0 ;; esac
	return 1
}
wait_for() { # seconds command...
	local n=$(($1 * 10))
	shift
	while ! "$@"; do
		n=$((n - 1))
		[ "$n" -gt 0 ] || return 1
		sleep 0.1
	done
}
active_serving() { [ "$(prop ActiveState)" = active ] && [ "$(prop StatusText)" = serving ]; }

step "started at boot, READY=1 (Type=notify)"
wait_for 60 active_serving || fail "wsgate.service not active with STATUS=serving"
healthz || fail "/healthz"
pid=$(prop MainPID)
[ "$(stat -c %U "/proc/$pid")" = wsgate ] || fail "main process not run by wsgate"
grep -q '^CapEff:[[:space:]]*0000000000000400$' "/proc/$pid/status" ||
	fail "capabilities: $(grep ^Cap "/proc/$pid/status")"
grep -q '^NoNewPrivs:[[:space:]]*1$' "/proc/$pid/status" || fail "NoNewPrivileges"
grep -q '^Seccomp:[[:space:]]*2$' "/proc/$pid/status" || fail "no seccomp filter"

step "systemctl reload: RELOADING=1, then READY=1"
systemctl reload wsgate || fail "reload"
[ "$(prop StatusText)" = "serving; reloaded" ] || fail "status after reload: $(prop StatusText)"
cp /etc/wsgate/wsgate.ini /tmp/wsgate.ini.good
echo "no_such_key = 1" >>/etc/wsgate/wsgate.ini
systemctl reload wsgate || fail "a rejected reload failed the unit"
[ "$(prop ActiveState)" = active ] || fail "not active after a rejected reload"
journalctl -u wsgate -p warning --no-pager | grep -q "rejected" ||
	fail "journalctl -p warning does not show the rejected reload"
! journalctl -u wsgate -p warning --no-pager | grep -q "started" ||
	fail "info lines logged as warnings"
cp /tmp/wsgate.ini.good /etc/wsgate/wsgate.ini

step "socket activation: wsgate.socket"
# The socket binds the service's address: the service must let it go first.
systemctl stop wsgate || fail "stop before enabling the socket"
systemctl enable --now wsgate.socket >/dev/null 2>&1 || fail "wsgate.socket"
systemctl start wsgate || fail "start with the socket"
wait_for 30 active_serving || fail "not serving after the restart"
journalctl -u wsgate --no-pager | grep -q "socket from the service manager" ||
	fail "the socket was not taken from systemd"
healthz || fail "/healthz over the passed socket"

step "stop"
systemctl disable --now wsgate.socket >/dev/null 2>&1
systemctl stop wsgate || fail "stop"
[ "$(prop ActiveState)" = inactive ] || fail "state after stop: $(prop ActiveState)"
[ "$(prop ExecMainStatus)" = 0 ] || fail "exit status $(prop ExecMainStatus)"
step "all systemd checks passed"
