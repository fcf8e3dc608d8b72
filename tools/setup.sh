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
  # the simulator command line's allocator (tools/third_party:fast_malloc)
  libmimalloc-dev
  libgrpc++-dev
  protobuf-compiler-grpc
  etcd-server
  etcd-client
  curl
  # bcrypt for core/auth (libxcrypt's crypt_r), SHA-256 for etcd's snapshot stream (net/etcd)
  libcrypt-dev
  libssl-dev
  # the openssl command makes the TLS tests' certificates at test time (net/testing/make_certs.sh)
  openssl
  # promtool checks /metrics (node:http_service_test); headless Chromium loads the status page
  # (node:status_page_test)
  prometheus
  chromium
  clang-format
  g++
  # libFuzzer and the sanitizer runtimes for tools/fuzz.sh (Debian's clang 14)
  clang
  libclang-rt-14-dev
)

# The project builds with Bazel 4 (.bazelversion; Debian 12's bazel-bootstrap is 4.2.3). Debian's
# build of Bazel reports no version ("bazel no_version"), so for it the version of the Debian
# package that owns the binary stands in.
check_bazel() {
  local path version owner
  if ! path=$(command -v bazel); then
    echo "setup: no bazel on PATH; Debian's bazel-bootstrap package provides Bazel 4.2.3" >&2
    return 1
  fi
  version=$(bazel --version 2>/dev/null | sed -n 's/^bazel //p' | head -n 1 || true)
  if [ "$version" = "no_version" ] || [ -z "$version" ]; then
    owner=$(dpkg-query -S "$(readlink -f "$path")" 2>/dev/null | cut -d: -f1 || true)
    if [ -n "$owner" ]; then
      version=$(dpkg-query -W -f='${Version}' "$owner" 2>/dev/null || true)
    fi
  fi
  if [[ "$version" != 4.* ]]; then
    echo "setup: this project needs Bazel 4.x (tested with 4.2.3, see .bazelversion), but the" \
      "bazel on PATH ($path) is version '${version:-unknown}'. Install Debian's" \
      "bazel-bootstrap (Bazel 4.2.3) and put /usr/bin/bazel first on PATH." >&2
    return 1
  fi
}

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  check_bazel
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
check_bazel
echo "setup: done"
