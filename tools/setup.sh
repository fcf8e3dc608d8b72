#!/usr/bin/env bash
# Installs every Debian package the project needs. Idempotent: when all packages are already
# present it only checks them (no apt-get update, no download), so a second run takes a moment.
set -euo pipefail

packages=(
  bazel-bootstrap
  libabsl-dev
  libprotobuf-dev
  protobuf-compiler
  libgtest-dev
  libgmock-dev
  libbenchmark-dev
  capnproto
  libcapnp-dev
  liblmdb-dev
  clang-format
  g++
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "setup: missing packages (${missing[*]}) and not root, and sudo is not available." >&2
    echo "setup: run this script as root." >&2
    exit 1
  fi
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get update -q; then
  echo "setup: apt-get update failed; is the Debian archive reachable?" >&2
  exit 1
fi
if ! "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; then
  for package in "${missing[@]}"; do
    if ! apt-cache show "$package" >/dev/null 2>&1; then
      echo "setup: package '$package' cannot be found in the configured Debian archive." >&2
    fi
  done
  echo "setup: apt-get install failed for: ${missing[*]}" >&2
  exit 1
fi
echo "setup: done"
