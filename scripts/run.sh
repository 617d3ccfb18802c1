#!/usr/bin/env bash
# Runs InstructBooth's main job on the built-in default. Until the built-in
# toy base model exists this is the GPU self-check: it prints the adapter and
# runs every op of the engine against its CPU reference.
# Usage: scripts/run.sh [instructbooth arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
go run ./cmd/ib "${@:-selfcheck}"
