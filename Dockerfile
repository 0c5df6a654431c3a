# MCP container image: one image with every binary (gateway, registry-svc,
# config-svc, health-svc, mcpctl); the command picks the service, e.g.
# `docker run mcp:latest registry-svc`.
#
# Targets:
#   runtime (default)  builds the workspace in release inside RUST_IMAGE.
#                      `docker build -t mcp:latest .`
#   runtime-prebuilt   copies binaries already built on the host
#                      (`cargo build --release --locked`, then copy them into
#                      deploy/docker/prebuilt/) for machines where the rust
#                      builder image cannot be pulled.
#                      `docker build --target runtime-prebuilt -t mcp:latest .`
#
# Stage order matters: the legacy builder (no BuildKit) builds every stage up
# to the target, so runtime-prebuilt comes before the Rust stages and needs
# nothing but RUNTIME_IMAGE.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# --- runtime-base: the runtime OS, a non-root user and the health probe -------
FROM ${RUNTIME_IMAGE} AS runtime-base
# The container health check: bash's /dev/tcp instead of curl, so the image
# installs no package and needs no network while it builds.
COPY deploy/docker/mcp-probe /usr/local/bin/mcp-probe
RUN chmod 0755 /usr/local/bin/mcp-probe \
 && echo 'mcp:x:10001:10001:MCP:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'mcp:x:10001:' >> /etc/group
# Numeric, so Kubernetes can verify runAsNonRoot.
USER 10001:10001
WORKDIR /
EXPOSE 8080 8081 8082 8083
CMD ["gateway"]

# --- runtime-prebuilt: binaries built on the host ------------------------------
FROM runtime-base AS runtime-prebuilt
# A directory of executables; its .gitignore keeps them out of git.
ARG PREBUILT_DIR=deploy/docker/prebuilt
COPY ${PREBUILT_DIR}/ /usr/local/bin/
USER 0
RUN rm -f /usr/local/bin/.gitignore
USER 10001:10001

# --- planner: the workspace's manifests with stub sources ---------------------
FROM ${RUST_IMAGE} AS planner
WORKDIR /src
COPY . .
RUN sh deploy/docker/recipe.sh /recipe

# --- builder: dependencies first (cached while the manifests stay), then the code
FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY --from=planner /recipe/ ./
RUN cargo build --release --locked --bins
COPY . .
# The copied sources may be older than the stub builds: touch them so cargo
# rebuilds the workspace crates (and only them).
RUN find . -path ./target -prune -o -type f -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bins \
 && mkdir /out \
 && find target/release -maxdepth 1 -type f -perm -u+x -exec cp {} /out/ \;

# --- runtime: the default target ------------------------------------------------
FROM runtime-base AS runtime
COPY --from=builder /out/ /usr/local/bin/
