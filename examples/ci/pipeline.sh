#!/bin/sh
# A CI pipeline run locally, traced the way the GitHub Actions and GitLab CI snippets beside it
# trace theirs: one pipeline span made first, whose TRACEPARENT every step shares, each step a
# `tracespool exec` span under it, and a final `tracespool flush` whatever happened.
#
#   examples/ci/pipeline.sh                      # lint, build and test this repository
#   LINT=true BUILD='make' TEST='make check' examples/ci/pipeline.sh
#
# The first failing step stops the pipeline and its exit code is the pipeline's.
set -eu

# The pipeline's span: recorded now, with no length (the steps carry the durations); its
# TRACEPARENT, printed as one `TRACEPARENT=...` line, is exported for every step. With tracing
# off (OTEL_SDK_DISABLED=true) nothing is printed, and the steps run untraced.
traceparent=$(tracespool span --name "${PIPELINE_NAME:-pipeline}" \
    --attr ci.pipeline.source=local --print-traceparent)
[ -z "$traceparent" ] || export "$traceparent"

# Whatever the steps did, what they left in the spool is sent before the pipeline ends (a CI
# runner is thrown away afterwards). Nothing to send, or no collector: still exit as the steps did.
trap 'tracespool flush >/dev/null 2>&1 || true' EXIT

step() {
    name=$1
    shift
    tracespool exec --name "$name" -- sh -c "$*"
}

step lint "${LINT:-cargo fmt --all -- --check}"
step build "${BUILD:-cargo build --locked}"
step test "${TEST:-cargo test --locked}"
