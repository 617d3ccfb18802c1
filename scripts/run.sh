#!/usr/bin/env bash
# Runs InstructBooth's main job on the built-in default: the toy world demo
# (ib demo). DreamBooth personalises the built-in toy base model on the toy
# world's novel subject, DDPO aligns it with the toy alignment reward, and
# the base, DreamBooth-only and InstructBooth models are evaluated on
# held-out prompts; results go to ./instructbooth-demo (an interrupted run
# resumes from it). About ten minutes on two CPU cores through lavapipe.
# Usage: scripts/run.sh [ib arguments]   (default: demo --out instructbooth-demo)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
if [ $# -eq 0 ]; then
  set -- demo --out instructbooth-demo
fi
go run ./cmd/ib "$@"
