#!/usr/bin/env bash
# Feature combinations of the asock library: no default features, then each feature alone,
# linted with warnings as errors (lib only: the tests and examples need the default features
# and run with --all-features in .ci/run). About a minute on two cores after the main build.
set -euo pipefail
cd "$(dirname "$0")/.."
for features in "" tls futures-io tokio test-certs hyper; do
  echo "== asock --no-default-features --features '$features'"
  cargo clippy -q -p asock --lib --no-default-features --features "$features" -- -D warnings
done
echo "== asock-cli (its own feature set)"
cargo clippy -q -p asock-cli --bins -- -D warnings
echo "feature combinations: ok"
