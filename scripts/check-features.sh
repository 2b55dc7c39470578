#!/usr/bin/env bash
# Feature combinations of the asock library, linted with warnings as errors: the whole powerset
# of its six features, up to what the features themselves imply (test-certs turns tls on, hyper
# turns futures-io on, so {tls, test-certs} is {test-certs}): 3 TLS states (off, tls,
# test-certs) x 3 futures-io states (off, futures-io, hyper) x tokio off/on = 18 combinations.
# Lib only: the tests and examples need the default features and run with --all-features in
# .ci/run. Then a real build (not only a check) with no default features, and the CLI's own
# feature set. About three minutes on two cores after the main build.
set -euo pipefail
cd "$(dirname "$0")/.."
n=0
for tls in "" tls test-certs; do
  for fio in "" futures-io hyper; do
    for tokio in "" tokio; do
      features=$(printf '%s\n' "$tls" "$fio" "$tokio" | sed '/^$/d' | paste -sd, -)
      echo "== asock --no-default-features --features '$features'"
      cargo clippy -q -p asock --lib --no-default-features --features "$features" -- -D warnings
      n=$((n + 1))
    done
  done
done
echo "== asock: build with --no-default-features"
cargo build -q -p asock --no-default-features
echo "== asock-cli (its own feature set)"
cargo clippy -q -p asock-cli --bins -- -D warnings
echo "feature combinations: ok ($n of the powerset, a no-default-features build, the CLI)"
