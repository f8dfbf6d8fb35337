#!/usr/bin/env bash
# Builds the sandbox template images.
#
#   images/build.sh [TEMPLATE...]       all templates in images/templates.tsv by default
#
# Environment:
#   BASE_IMAGE   base to build FROM (default: sandbox-base:bookworm, made locally with mmdebstrap
#                when missing; set e.g. debian:bookworm-slim where a registry is reachable)
#   EXECUTOR     a prebuilt sandbox-executor binary (default: cargo build --release)
#   MIRROR       Debian mirror for mmdebstrap (default: http://deb.debian.org/debian)
#   IMAGE_PREFIX put before every image name of images/templates.tsv (default: none), e.g.
#                IMAGE_PREFIX=ctx- builds ctx-sandbox/python-basic:latest, so a second set of
#                images can be built and tested (crates/e2e reads the same variable) without
#                replacing the set others use
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE="${BASE_IMAGE:-sandbox-base:bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
IMAGE_PREFIX="${IMAGE_PREFIX:-}"
step=0
t0=$SECONDS
say() { step=$((step + 1)); printf '[images %d] %s\n' "$step" "$*"; }
done_in() { printf '           done in %ds\n' "$((SECONDS - $1))"; }

command -v docker >/dev/null || { echo "docker is not installed (apt-get install docker.io)" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "the Docker daemon is not running (see scripts/setup.sh)" >&2; exit 1; }

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  if [ "$BASE_IMAGE" != "sandbox-base:bookworm" ]; then
    say "pulling $BASE_IMAGE"
    docker pull "$BASE_IMAGE"
  else
    command -v mmdebstrap >/dev/null || { echo "mmdebstrap is not installed (apt-get install mmdebstrap)" >&2; exit 1; }
    say "building the base root filesystem with mmdebstrap (about 20s)"
    s=$SECONDS
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mmdebstrap --quiet --variant=minbase --include=ca-certificates bookworm "$tmp/base.tar" "$MIRROR"
    docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' "$tmp/base.tar" "$BASE_IMAGE" >/dev/null
    rm -f "$tmp/base.tar"
    done_in "$s"
  fi
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx" ${tmp:+"$tmp"}' EXIT
if [ -n "${EXECUTOR:-}" ]; then
  cp "$EXECUTOR" "$ctx/sandbox-executor"
else
  say "building sandbox-executor (release)"
  s=$SECONDS
  cargo build --release --quiet -p sandbox-executor
  target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  cp "$target_dir/release/sandbox-executor" "$ctx/sandbox-executor"
  done_in "$s"
fi
cp images/Dockerfile "$ctx/Dockerfile"

wanted=("$@")
while IFS=$'\t' read -r template image packages; do
  case "$template" in ''|'#'*) continue ;; esac
  if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " == *" $template "* ]]; then continue; fi
  image="$IMAGE_PREFIX$image"
  say "building $template -> $image"
  s=$SECONDS
  # Host networking lets apt reach the mirror even when dockerd runs without a bridge.
  if ! docker build --network host --quiet \
    --build-arg BASE="$BASE_IMAGE" --build-arg PACKAGES="$packages" --build-arg TEMPLATE="$template" \
    --tag "$image" "$ctx" >"$ctx/build.log" 2>&1; then
    cat "$ctx/build.log" >&2
    echo "building $template failed" >&2
    exit 1
  fi
  done_in "$s"
done < images/templates.tsv
printf '[images] all done in %ds\n' "$((SECONDS - t0))"
