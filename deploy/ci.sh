#!/usr/bin/env bash
# Deployment checks, run by .ci/run (CI=true) and by hand (`bash deploy/ci.sh`):
#   1. docker-compose.yml validates (`docker-compose config`);
#   2. every kustomize overlay renders, every object validates against the
#      Kubernetes schemas offline (kubernetes-validate), and the deployment
#      policy holds (deploy/check_manifests.py: probes, limits, security,
#      graceful shutdown, references);
#   3. every setting the compose file and the manifests pass to a binary is one
#      that binary accepts (its `--help`), with a value it accepts;
#   4. the compose stack runs on this machine's Docker with no image pulled
#      (base images made with debootstrap when absent, binaries built on the
#      host, the Dockerfile's runtime-prebuilt target), and a smoke test goes
#      through the published gateway port; `docker-compose down -v` always.
# Idempotent; every long step is bounded with `timeout`.
#
# Environment: MCP_CI_SKIP_DOCKER=1 skips step 4 (never under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PROJECT=mcp-ci
export MCP_IMAGE=mcp:ci
BINARIES=(gateway registry-svc config-svc health-svc mcpctl)
SCRIPT_START=$(date +%s)
STEP_START=$SCRIPT_START
WORK=$(mktemp -d /tmp/mcp-deploy-ci.XXXXXX)
COMPOSE_UP=0
IMAGE_BUILT=0

log() { printf '\n==> [deploy %4ss] %s\n' "$(($(date +%s) - SCRIPT_START))" "$*"; }
step_done() {
  local now
  now=$(date +%s)
  printf '    (%s: %ss)\n' "$1" "$((now - STEP_START))"
  STEP_START=$now
}
die() { printf 'deploy/ci.sh: FAIL: %s\n' "$*" >&2; exit 1; }

compose() {
  timeout 300 docker-compose -p "$PROJECT" --env-file .env.example \
    -f docker-compose.yml -f deploy/compose.ci.yml "$@"
}

cleanup() {
  local rc=$?
  set +e
  if ((COMPOSE_UP)); then
    if ((rc != 0)); then
      log "logs of the compose stack (last 40 lines each)"
      compose ps
      compose logs --no-color --tail=40
    fi
    log "docker-compose down -v"
    compose down -v --remove-orphans --timeout 10 >/dev/null 2>&1
  fi
  for b in "${BINARIES[@]}"; do rm -f "deploy/docker/prebuilt/$b"; done
  # The image is rebuilt every run; the base images are kept for the next one.
  if ((IMAGE_BUILT)); then docker rmi "$MCP_IMAGE" >/dev/null 2>&1; fi
  rm -rf "$WORK"
  printf '\n==> deploy checks %s in %ss\n' "$([ $rc = 0 ] && echo passed || echo FAILED)" \
    "$(($(date +%s) - SCRIPT_START))"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

APT_UPDATED=0
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if ((!APT_UPDATED)); then timeout 300 apt-get update -qq; APT_UPDATED=1; fi
  timeout 600 apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- tools -------------------------------------------------------------------
log "tools"
command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
command -v kubectl >/dev/null 2>&1 || die "kubectl (with kustomize built in) is not installed"
command -v python3 >/dev/null 2>&1 || apt_install python3
if ! python3 -c 'import kubernetes_validate, yaml' >/dev/null 2>&1; then
  timeout 300 python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate
fi
docker-compose version --short
kubectl version --client 2>/dev/null | head -2
kubernetes-validate --version
step_done tools

# --- 1. compose file -----------------------------------------------------------
log "1. docker-compose config"
compose config -q
compose --profile observability config -q
compose --profile ha config -q
# What users run: the file alone, with the committed example settings.
timeout 60 docker-compose --env-file .env.example -f docker-compose.yml config -q
# Without JWT_SECRET the file refuses to start rather than running unauthenticated.
if env -u JWT_SECRET timeout 60 docker-compose --env-file /dev/null -f docker-compose.yml config -q >/dev/null 2>&1; then
  die "docker-compose.yml accepts a missing JWT_SECRET"
fi
compose config >"$WORK/compose.yaml"
echo "    compose file valid: $(grep -c '^  [a-z]' "$WORK/compose.yaml" || true) top-level entries"
step_done compose

# --- 2. kustomize overlays -----------------------------------------------------
log "2. kubectl kustomize + kubernetes-validate (offline schemas)"
manifests=()
for overlay in k8s/overlays/*/; do
  name=$(basename "$overlay")
  timeout 60 kubectl kustomize "$overlay" >"$WORK/k8s-$name.yaml"
  # Validate against the newest bundled schemas and an older, still common release.
  for version in 1.37.0 1.30.0; do
    timeout 120 kubernetes-validate --strict --quiet -k "$version" "$WORK/k8s-$name.yaml" ||
      die "overlay $name does not validate against Kubernetes $version"
  done
  echo "    $name: $(grep -c '^kind:' "$WORK/k8s-$name.yaml") objects valid"
  manifests+=(--manifests "$WORK/k8s-$name.yaml")
done
((${#manifests[@]})) || die "no overlay under k8s/overlays"
# What the schemas cannot see: probes, limits, security, shutdown, references.
timeout 60 python3 deploy/check_manifests.py "$WORK"/k8s-*.yaml
# The Dockerfile's dependency layer: the stub workspace must resolve with the lock file.
sh deploy/docker/recipe.sh "$WORK/recipe"
timeout 120 cargo metadata --locked --format-version 1 \
  --manifest-path "$WORK/recipe/Cargo.toml" >/dev/null ||
  die "deploy/docker/recipe.sh makes a workspace cargo cannot read"
echo "    Dockerfile dependency recipe resolves"
step_done kustomize

# --- release binaries (for 3 and 4) ------------------------------------------
log "cargo build --release --locked --bins"
timeout 1500 cargo build --release --locked --workspace --bins
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps --offline |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN_DIR=$TARGET_DIR/release
for b in "${BINARIES[@]}"; do [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b was not built"; done
step_done "release build"

# --- 3. settings ---------------------------------------------------------------
log "3. every setting passed is one the binary accepts"
timeout 120 python3 deploy/check_settings.py --bin-dir "$BIN_DIR" \
  --compose "$WORK/compose.yaml" "${manifests[@]}"
step_done settings

# --- 4. the compose stack on Docker --------------------------------------------
if [ "${MCP_CI_SKIP_DOCKER:-0}" = 1 ] && [ "${CI:-}" != true ]; then
  log "4. skipped (MCP_CI_SKIP_DOCKER=1)"
  exit 0
fi
log "4. compose stack on Docker, no image pulled"
timeout 30 docker info >/dev/null 2>&1 || die "the Docker engine does not answer"
# Without buildx, the docker CLI must use its legacy builder.
if ! docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=0; fi

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# The Debian mirror apt already uses here.
debian_mirror() {
  apt-cache policy 2>/dev/null |
    awk '$2 ~ /^https?:\/\// && $3 ~ /^bookworm\/main/ {print $2; exit}'
}

make_base_images() {
  local rootfs mirror
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap >/dev/null 2>&1
  rootfs=$WORK/rootfs
  mirror=$(debian_mirror)
  echo "    debootstrap --variant=minbase bookworm ${mirror:-(default mirror)}"
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap did not install"
  timeout 900 debootstrap --variant=minbase bookworm "$rootfs" ${mirror:+"$mirror"} \
    >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log"; die "debootstrap failed"; }
  if ! have_image debian:bookworm-slim; then
    echo "    docker import -> debian:bookworm-slim"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
    tar -C "$rootfs" -c . | timeout 300 docker import \
      --change 'CMD ["bash"]' --change 'LABEL org.mcp.ci-made=debootstrap' \
      - debian:bookworm-slim >/dev/null
  fi
  if ! have_image redis:7; then
    echo "    chroot apt-get install redis-server; docker import -> redis:7"
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    # Install without starting anything in the chroot.
    printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
    chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
    { timeout 300 chroot "$rootfs" apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive timeout 600 chroot "$rootfs" \
        apt-get install -y -qq --no-install-recommends redis-server; } >"$WORK/redis-install.log" 2>&1 ||
      { tail -20 "$WORK/redis-install.log"; die "installing redis-server in the Debian root failed"; }
    rm -f "$rootfs/usr/sbin/policy-rc.d"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
    : >"$rootfs/etc/resolv.conf"
    mkdir -p "$rootfs/data"
    chroot "$rootfs" chown redis:redis /data
    # Like the official image: `redis-server ARGS` with protected mode off
    # (the container network is the boundary), later flags still win.
    cat >"$rootfs/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
if [ "${1#-}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ]; then shift; set -- redis-server --protected-mode no "$@"; fi
exec "$@"
EOF
    chmod 0755 "$rootfs/usr/local/bin/docker-entrypoint.sh"
    tar -C "$rootfs" -c . | timeout 300 docker import \
      --change 'WORKDIR /data' --change 'VOLUME /data' --change 'EXPOSE 6379' \
      --change 'ENTRYPOINT ["docker-entrypoint.sh"]' --change 'CMD ["redis-server"]' \
      --change 'LABEL org.mcp.ci-made=debootstrap' \
      - redis:7 >/dev/null
  fi
  rm -rf "$rootfs"
}

if have_image debian:bookworm-slim && have_image redis:7; then
  echo "    base images present: debian:bookworm-slim, redis:7 (reused)"
else
  make_base_images
fi
step_done "base images"

for b in "${BINARIES[@]}"; do cp "$BIN_DIR/$b" "deploy/docker/prebuilt/$b"; done
IMAGE_BUILT=1
timeout 600 docker build --target runtime-prebuilt -t "$MCP_IMAGE" . >"$WORK/build.log" 2>&1 ||
  { tail -30 "$WORK/build.log"; die "docker build --target runtime-prebuilt failed"; }
docker run --rm --entrypoint sh "$MCP_IMAGE" -c \
  'id -u | grep -qx 10001 && for b in gateway registry-svc config-svc health-svc mcpctl; do command -v $b >/dev/null; done' ||
  die "image $MCP_IMAGE lacks a binary or runs as root"
echo "    image $MCP_IMAGE built (runtime-prebuilt), runs as uid 10001"
step_done "image"

# A free host port for the gateway, so CI never collides with a local stack.
MCP_GATEWAY_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export MCP_GATEWAY_PORT
COMPOSE_UP=1
compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true
compose up -d --no-build

# Wait (bounded) until every container is healthy; fail at once if one stops.
deadline=$(($(date +%s) + 150))
while :; do
  states=$(compose ps -q | xargs -r docker inspect \
    -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}')
  total=$(grep -c . <<<"$states" || true)
  healthy=$(grep -c ' running healthy$' <<<"$states" || true)
  if grep -Eq ' (exited|dead) | unhealthy$' <<<"$states"; then
    echo "$states"
    die "a container stopped or is unhealthy"
  fi
  # redis + registry + config + 2 health + gateway
  if ((total == 6 && healthy == 6)); then break; fi
  if (($(date +%s) > deadline)); then
    echo "$states"
    die "the stack was not healthy within 150s ($healthy/$total healthy)"
  fi
  sleep 2
done
echo "$states" | sed 's/^/    /'
replicas=$(compose ps -q health-svc | grep -c . || true)
((replicas == 2)) || die "expected 2 health-svc replicas, found $replicas"
echo "    all 6 containers healthy (their /readyz answers 200, so each reaches Redis)"
step_done "compose up"

log "smoke test through the gateway on 127.0.0.1:$MCP_GATEWAY_PORT"
JWT_SECRET=$(sed -n 's/^JWT_SECRET=//p' .env.example)
timeout 120 python3 deploy/smoke.py "http://127.0.0.1:$MCP_GATEWAY_PORT" "$JWT_SECRET"
step_done smoke
