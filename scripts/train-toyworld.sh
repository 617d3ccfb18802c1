#!/usr/bin/env bash
# Trains the toy world's base model (training/toyworld: SD 1.x's text
# encoder and U-Net with small widths over a fixed 4x4 pixel codec) from
# scratch and copies the finished diffusers folder to DEST (by default the
# built-in model, training/toyworld/base). The run stops cleanly at
# TIME_LIMIT, saves, then generates 40 images for world captions and prints
# their prompt-alignment score. training/toyworld/base/TRAINING.md records
# the command and the time of the committed model.
#
# Usage: scripts/train-toyworld.sh [DEST] [ib toyworld train flags...]
#   DEST            where the model goes (default training/toyworld/base)
#   IB=path         use a prebuilt ib binary instead of building one
#   RUN=dir         the working folder (checkpoints, optimizer state,
#                   eval.png); an interrupted run resumes from it
#   TIME_LIMIT=85m
# Example: scripts/train-toyworld.sh training/toyworld/base --batch 32 --lr 1e-3
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$HOME/go/bin"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
DEST=${1:-training/toyworld/base}
shift || true
RUN=${RUN:-/tmp/toyworld-run}
if [ -z "${IB:-}" ]; then
  IB=/tmp/ib-toyworld
  go build -o "$IB" ./cmd/ib
fi
"$IB" toyworld train --out "$RUN" --time-limit "${TIME_LIMIT:-85m}" "$@"
mkdir -p "$DEST"
for part in model_index.json scheduler tokenizer text_encoder unet vae; do
  rm -rf "${DEST:?}/$part"
  cp -r "$RUN/$part" "$DEST/"
done
mkdir -p "$DEST/train"
cp "$RUN"/train/state.json "$RUN"/train/eval.txt "$RUN"/train/eval.png "$DEST/train/" 2>/dev/null || true
du -sh "$DEST"
echo "model: $DEST"
