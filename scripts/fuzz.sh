#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a short time each (default 10s): a bounded smoke of the request
# decoders, not a long fuzzing campaign. Usage: scripts/fuzz.sh [duration]
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${1:-10s}
count=0
while read -r pkg; do
  while read -r target; do
    [[ $target == Fuzz* ]] || continue
    echo "fuzz: $pkg $target ($fuzztime)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
    count=$((count + 1))
  done < <(go test -list '^Fuzz' "$pkg" 2>/dev/null)
done < <(go list ./...)

if [[ $count -eq 0 ]]; then
  echo "fuzz: no fuzz targets found" >&2
  exit 1
fi
echo "fuzz: $count targets passed"
