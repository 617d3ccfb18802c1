#!/usr/bin/env bash
# Packages the desktop app with Fyne's packager (fyne.io/tools, installed
# through the Go module proxy when missing) from FyneApp.toml (name, id,
# version, icon). Writes dist/InstructBooth.tar.xz for Linux by default
# (a Makefile, the binary, the .desktop file and the icon); pass another
# fyne target (windows, darwin, ...) as the first argument when the
# toolchain for it is present.
# Usage: scripts/package.sh [target, default linux] [output folder, default out]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
target=${1:-linux}
out=$(mkdir -p "${2:-out}" && cd "${2:-out}" && pwd)
FYNE_TOOLS_VERSION=${FYNE_TOOLS_VERSION:-v1.7.4}
fyne=$(command -v fyne || true)
if [ -z "$fyne" ]; then
  echo "package: installing fyne.io/tools/cmd/fyne@$FYNE_TOOLS_VERSION" >&2
  GOFLAGS= go install "fyne.io/tools/cmd/fyne@$FYNE_TOOLS_VERSION"
  fyne=$(go env GOPATH)/bin/fyne
fi

# fyne package reads FyneApp.toml (and wants Go code) in its working
# folder, the repository root, and bumps the Build number there: the file
# is restored afterwards so that the repository is left as it is.
tmp=$(mktemp -d)
cp FyneApp.toml "$tmp/FyneApp.toml.orig"
trap 'cp "$tmp/FyneApp.toml.orig" FyneApp.toml; rm -rf "$tmp"' EXIT
exe=instructbooth
goos=linux
case "$target" in windows) exe=instructbooth.exe; goos=windows ;; darwin) goos=darwin ;; esac
GOOS=$goos go build -o "$tmp/$exe" ./cmd/instructbooth
before=$(ls)
"$fyne" package --target "$target" --executable "$tmp/$exe"
for f in $(ls); do
  if ! grep -qx "$f" <<<"$before"; then
    mv "$f" "$out/" && echo "$out/$f"
  fi
done
