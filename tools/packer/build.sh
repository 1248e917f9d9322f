#!/usr/bin/env bash
# Builds the pinned Packer and its qemu, vagrant and virtualbox plugins from this module (go.mod pins them)
# into bin/, and installs the plugins into bin/packer-plugins so `packer init` needs no network.
# Usage: tools/packer/build.sh   (from anywhere; idempotent — rebuilds only what go build finds stale)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$root/bin
plugins=$bin/packer-plugins
mkdir -p "$bin" "$plugins"
cd "$here"

build() { # build OUTPUT PACKAGE [LDFLAGS...]
  local out=$1 pkg=$2
  shift 2
  go build -trimpath -ldflags "-s -w $*" -o "$bin/$out" "$pkg"
}

echo "building packer (tools/packer)"
build packer github.com/hashicorp/packer
build packer-plugin-qemu github.com/hashicorp/packer-plugin-qemu
# Without an empty prerelease these two call themselves -dev and Packer reports them missing.
build packer-plugin-vagrant github.com/hashicorp/packer-plugin-vagrant -X github.com/hashicorp/packer-plugin-vagrant/version.VersionPrerelease=
build packer-plugin-virtualbox github.com/hashicorp/packer-plugin-virtualbox -X github.com/hashicorp/packer-plugin-virtualbox/version.VersionPrerelease=

for name in qemu vagrant virtualbox; do
  PACKER_PLUGIN_PATH=$plugins "$bin/packer" plugins install --path "$bin/packer-plugin-$name" "github.com/hashicorp/$name" >/dev/null
done
PACKER_PLUGIN_PATH=$plugins "$bin/packer" plugins installed
"$bin/packer" version
