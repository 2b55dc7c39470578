#!/usr/bin/env bash
# Checks that asock and asock-cli build with the lowest versions their Cargo.toml files allow
# for their direct dependencies (`-Z direct-minimal-versions`).
#
# The flag is unstable. With only a stable toolchain, RUSTC_BOOTSTRAP=1 lets stable cargo take
# it (for this one `cargo update`; the build itself is a plain stable build). It works on a
# copy of the tree, so the real Cargo.lock is never touched. Needs crates.io (it resolves and
# downloads the older versions); a few minutes on two cores, so it is not part of .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The workspace as committed (plus uncommitted edits to tracked files), without target/.
git ls-files -z | xargs -0 -I{} cp --parents {} "$work"/ 2>/dev/null || true
cd "$work"
# Only the published crates: the bench/ peers are not published and pin what they like.
sed -i 's|^members = .*|members = ["asock", "asock-cli"]|' Cargo.toml
rm -f Cargo.lock
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$work/target}"
RUSTC_BOOTSTRAP=1 cargo update -Z direct-minimal-versions
cargo check --workspace --all-features --lib --bins
echo "minimal versions: ok"
