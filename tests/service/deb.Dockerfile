# tests/service/deb.Dockerfile - the Debian package built and installed in fresh Debian 12
# containers (tests/service/check-deb.sh): stage "build" runs the README's two commands on the
# source tree, stage "installed" is a clean bookworm-slim with only the .deb installed, stage
# "systemd" adds systemd as PID 1.
FROM debian:bookworm-slim AS build
WORKDIR /src/wsgate
COPY . .
# The README's commands: the Build-Depends of debian/control, then the binary package.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get build-dep -y --no-install-recommends ./ \
 && DEB_BUILD_OPTIONS=parallel=2 dpkg-buildpackage -us -uc -b \
 && mkdir /debs && mv ../wsgate_*.deb /debs/

FROM debian:bookworm-slim AS installed
# The base image leaves man pages out; the package's are checked, so let dpkg install them.
RUN rm -f /etc/dpkg/dpkg.cfg.d/slim
COPY --from=build /debs/ /debs/
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      /debs/wsgate_*_amd64.deb \
 && rm -rf /var/lib/apt/lists/*

# The same, booted by systemd (podman run --systemd=always): the unit for real.
FROM installed AS systemd
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd systemd-sysv \
 && rm -rf /var/lib/apt/lists/*
CMD ["/lib/systemd/systemd"]
