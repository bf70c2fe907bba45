#!/bin/bash
# tests/service/deb-checks.sh - run inside the container with the wsgate .deb installed (no
# systemd there): the package's promises, checked one by one; exits non-zero at the first broken.
set -euo pipefail

step() { printf 'deb-checks: %s\n' "$*"; }
fail() { printf 'deb-checks: FAILED: %s\n' "$*" >&2; exit 1; }

step "binary and installed config"
wsgate --version
wsgate -t -c /etc/wsgate/wsgate.ini || fail "wsgate -t on the installed config"

step "system user, conffile, permissions"
getent passwd wsgate | grep -q ':/nonexistent:/usr/sbin/nologin$' || fail "no wsgate system user"
getent group wsgate >/dev/null || fail "no wsgate group"
dpkg-query -W -f='${Conffiles}\n' wsgate | grep -q '^ /etc/wsgate/wsgate.ini ' ||
	fail "/etc/wsgate/wsgate.ini is not a conffile"
[ "$(stat -c '%U:%G %a' /etc/wsgate/wsgate.ini)" = "root:wsgate 640" ] ||
	fail "config owner/mode: $(stat -c '%U:%G %a' /etc/wsgate/wsgate.ini)"

step "unit enabled, socket not, man pages"
[ -L /etc/systemd/system/multi-user.target.wants/wsgate.service ] || fail "wsgate.service not enabled"
[ ! -e /etc/systemd/system/sockets.target.wants/wsgate.socket ] || fail "wsgate.socket enabled"
grep -q '^Type=notify$' /lib/systemd/system/wsgate.service || fail "unit not Type=notify"
[ -x /bin/kill ] || fail "no /bin/kill for the unit's ExecReload (Depends: procps)"
[ -f /usr/share/man/man8/wsgate.8.gz ] && [ -f /usr/share/man/man5/wsgate.ini.5.gz ] ||
	fail "man pages missing"
[ -f /usr/share/wsgate/grafana/wsgate.json ] || fail "dashboard missing"

step "started as the service user: /healthz"
setpriv --reuid=wsgate --regid=wsgate --init-groups --inh-caps=-all \
	/usr/bin/wsgate -c /etc/wsgate/wsgate.ini 2>/tmp/wsgate.err &
pid=$!
ok=no
for _ in $(seq 1 100); do
	kill -0 "$pid" 2>/dev/null || break
	if { exec 3<>/dev/tcp/127.0.0.1/8080; } 2>/dev/null; then
		printf 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
		IFS= read -r -t 2 status <&3 || status=""
		exec 3<&-
		case $status in "HTTP/1."[01]" 200"*) ok=yes; break ;; esac
	fi
	sleep 0.1
done
uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo "?")
[ "$ok" = yes ] || { cat /tmp/wsgate.err >&2; fail "/healthz did not answer 200"; }
[ "$uid" = "$(id -u wsgate)" ] || fail "wsgate runs as uid $uid, not wsgate"
kill -TERM "$pid"
wait "$pid" || fail "wsgate exited with $? after SIGTERM"
cat /tmp/wsgate.err

step "remove keeps the config and the user"
DEBIAN_FRONTEND=noninteractive apt-get remove -y -q wsgate >/dev/null
[ ! -e /usr/bin/wsgate ] || fail "binary left after remove"
[ -f /etc/wsgate/wsgate.ini ] || fail "remove deleted the config"
getent passwd wsgate >/dev/null || fail "remove deleted the user"

step "purge removes the config and the user"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -q wsgate >/dev/null
[ ! -e /etc/wsgate ] || fail "purge left /etc/wsgate"
! getent passwd wsgate >/dev/null || fail "purge left the wsgate user"
! getent group wsgate >/dev/null || fail "purge left the wsgate group"
[ ! -e /etc/systemd/system/multi-user.target.wants/wsgate.service ] || fail "purge left the unit enabled"
step "all package checks passed"
