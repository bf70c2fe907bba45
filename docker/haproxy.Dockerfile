# docker/haproxy.Dockerfile - HAProxy in front of the wsgate replicas (docker/haproxy.cfg).
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy \
 && rm -rf /var/lib/apt/lists/*
COPY docker/haproxy.cfg /etc/haproxy/haproxy.cfg
# Checked at build time so a broken config fails the build, not the start-up.
RUN haproxy -c -f /etc/haproxy/haproxy.cfg
USER haproxy
EXPOSE 8080 8404
STOPSIGNAL SIGUSR1
# Master-worker in the foreground; SIGUSR1 = soft stop (finish tunnels up to hard-stop-after).
CMD ["haproxy", "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"]
