# docker/redis.Dockerfile - Redis for the compose topology (docker/docker-compose.yml), built on
# the same base as wsgate because no registry is assumed. Pub/sub only: nothing is persisted.
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*
USER redis
EXPOSE 6379
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=10s --retries=3 CMD ["redis-cli", "ping"]
CMD ["redis-server", "--protected-mode", "no", "--bind", "0.0.0.0", "--port", "6379", \
     "--save", "", "--appendonly", "no", "--dir", "/tmp"]
