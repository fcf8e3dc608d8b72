#!/usr/bin/env bash
# Bazel test wrapper: checks the workspace's real core/ tree with purity_check.sh. Runfiles are
# symlinks into the workspace, so following this script's link finds the tree even when new
# packages appear under core/ (the BUILD rule tags it "external" so it is never cached).
set -euo pipefail
root=$(dirname "$(readlink -f "$0")")/..
exec bash "$root/tools/purity_check.sh" "$root/core"
