#!/usr/bin/env bash
# Runs the whole test suite (GPU tests on lavapipe when no GPU exists).
# Usage: scripts/test.sh [go test flags]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
go vet ./...
go test -timeout 40m "$@" ./...
# Bounded fuzzing of the safetensors header parser (hostile files).
go test ./model/safetensors -run '^$' -fuzz FuzzParse -fuzztime 30s
