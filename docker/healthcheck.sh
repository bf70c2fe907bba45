#!/bin/bash
# docker/healthcheck.sh - container HEALTHCHECK for wsgate: GET /readyz on the local listener
# with bash's /dev/tcp, so the image needs neither curl nor wget. Healthy only on a 200:
# /readyz is 503 while the Redis link is down or the replica drains, so "healthy" means it
# delivers (/healthz only says the process runs).
port=${WSGATE_HEALTH_PORT:-8080}
path=${WSGATE_HEALTH_PATH:-/readyz}
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
IFS= read -r -t 2 status <&3 || exit 1
case $status in
"HTTP/1."[01]" 200"*) exit 0 ;;
*) echo "wsgate-healthcheck: $path: ${status%$'\r'}" >&2; exit 1 ;;
esac
