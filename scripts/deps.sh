#!/usr/bin/env bash
# Installs the Debian 12 packages drt needs, only those that are missing; silent when none is.
# `deps.sh fuzz` adds what scripts/fuzz.sh needs (clang and its libFuzzer runtime).
set -euo pipefail

pkgs=(build-essential cmake pkg-config
      libxtensor-dev libxsimd-dev nlohmann-json3-dev libstb-dev doctest-dev libbenchmark-dev libcli11-dev parallel
      libavformat-dev libavcodec-dev libswscale-dev libavutil-dev)  # FFmpeg: video in the drt program (optional)
if [ "${1:-}" = fuzz ]; then pkgs+=(clang libclang-rt-14-dev); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps.sh: root or sudo is needed to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "deps.sh: installing ${missing[*]}"
install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}")
# A fresh image has empty or stale package lists: update only when the install fails without it.
"${install[@]}" || { "${sudo[@]}" apt-get update -q && "${install[@]}"; }
