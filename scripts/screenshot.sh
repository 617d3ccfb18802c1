#!/usr/bin/env bash
# Runs the real desktop app (cmd/instructbooth) under Xvfb on a demo
# database it creates (three demo subjects, the sd-tiny fixture model as the
# base model) and saves screenshots of its window for the README:
#   docs/screenshot.png          the subject library
#   docs/screenshot-subject.png  a subject's page while it generates images
# Usage: scripts/screenshot.sh [output folder, default docs]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh # Xvfb, GL headers, Go
need=()
command -v import >/dev/null || need+=(imagemagick)
command -v xwininfo >/dev/null || need+=(x11-utils)
if ((${#need[@]})); then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

out=${1:-docs}
mkdir -p "$out"
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/instructbooth" ./cmd/instructbooth
model=$(cd ../shared/fixtures/sd-tiny/diffusers 2>/dev/null && pwd || true)

disp=:$((90 + RANDOM % 100))
Xvfb "$disp" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
pids+=($!)
sleep 1

# shot NAME ARGS...: starts the app with ARGS on a fresh settings folder,
# waits for its window to be drawn, saves the window as NAME, stops it.
shot() {
  local name=$1; shift
  local home="$tmp/home-$name"
  mkdir -p "$home"
  DISPLAY=$disp HOME="$home" XDG_CONFIG_HOME="$home/.config" INSTRUCTBOOTH_ADAPTER=${INSTRUCTBOOTH_ADAPTER:-} \
    "$tmp/instructbooth" -data "$tmp/data" "$@" >"$tmp/$name.log" 2>&1 &
  local app=$!
  local id=""
  for _ in $(seq 100); do
    id=$(DISPLAY=$disp xwininfo -root -tree 2>/dev/null | awk '/"InstructBooth"/ {print $1; exit}')
    [ -n "$id" ] && break
    sleep 0.2
  done
  if [ -z "$id" ]; then
    echo "screenshot: the app's window did not appear; its output:" >&2
    cat "$tmp/$name.log" >&2
    kill "$app" 2>/dev/null || true
    exit 1
  fi
  sleep "${WAIT:-6}" # thumbnails decode, the GPU opens, the job runs
  DISPLAY=$disp import -window "$id" "$out/$name.png"
  kill "$app" 2>/dev/null || true
  wait "$app" 2>/dev/null || true
  echo "$out/$name.png"
}

args=(-demo)
[ -n "$model" ] && args+=(-model "$model")
shot screenshot "${args[@]}" -tab library
gen=()
[ -n "$model" ] && gen=(-generate "a photo of sks dog on the beach")
WAIT=${WAIT_SUBJECT:-15} shot screenshot-subject -subject Biscuit "${gen[@]}"
