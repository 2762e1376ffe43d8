#!/usr/bin/env bash
# Builds the image bocluster:latest from this checkout: a static binary (gnu target with
# crt-static) in a FROM scratch image. Needs only cargo and a Docker engine; pulls nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-gnu
image=${BOCLUSTER_IMAGE:-bocluster:latest}

echo "build.sh: building a static bocluster binary ($target, crt-static)"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$target" --bin bocluster
binary="target/$target/release/bocluster"
if ldd "$binary" 2>&1 | grep -q "=>"; then
  echo "build.sh: $binary is dynamically linked; a FROM scratch image cannot run it" >&2
  exit 1
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$binary" "$context/bocluster"
strip "$context/bocluster" 2>/dev/null || true
cp docker/Dockerfile "$context/Dockerfile"
echo "build.sh: building image $image"
DOCKER_BUILDKIT=0 docker build --quiet -t "$image" "$context" >/dev/null
size=$(docker image inspect "$image" --format '{{.Size}}')
echo "build.sh: $image built, $((size / 1024 / 1024)) MiB ($size bytes)"
