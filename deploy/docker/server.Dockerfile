# The control plane image for Kubernetes (deploy/helm/sandbox). Like images/Dockerfile it copies a
# binary built beforehand, so it builds without a Rust toolchain in the image:
#
#   cargo build --release -p sandbox-server
#   cp target/release/sandbox-server deploy/docker/
#   docker build -f deploy/docker/server.Dockerfile -t REGISTRY/sandbox/server:0.1.0 deploy/docker
#
# BASE is any glibc base with CA certificates (the same local mmdebstrap root images/build.sh
# makes works when no registry is reachable).
ARG BASE=debian:bookworm-slim
FROM ${BASE}

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 sandbox-server \
 && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin sandbox-server \
 && mkdir -p /var/lib/sandbox /etc/sandbox \
 && chown 65532:65532 /var/lib/sandbox

COPY sandbox-server /usr/local/bin/sandbox-server

USER 65532:65532
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/sandbox-server"]
CMD ["serve"]
