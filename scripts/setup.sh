#!/usr/bin/env bash
# Installs what InstructBooth needs on Debian 12 when it is missing: the
# Vulkan loader and Mesa's lavapipe (a Vulkan driver on the CPU, used when no
# GPU exists), Fyne's build headers, Xvfb for UI checks, and a Go toolchain.
# Sourced by run.sh and test.sh.
set -euo pipefail

pkgs=(libvulkan1 mesa-vulkan-drivers libgl1-mesa-dev libx11-dev libxcursor-dev
      libxrandr-dev libxinerama-dev libxi-dev libxxf86vm-dev xvfb xauth gcc pkg-config)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

export PATH="$PATH:/usr/local/go/bin:$HOME/go/bin"
if ! command -v go >/dev/null; then
  echo "setup: installing Go" >&2
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq golang-go >/dev/null
fi
# go.mod asks for Go 1.26; an older go (>= 1.21) fetches it through the
# module proxy.
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
export LANG=${LANG:-C.UTF-8}
