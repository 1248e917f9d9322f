#!/usr/bin/env bash
# Runs every Go fuzz target in the module briefly: a bounded smoke of the request decoders, not a long fuzzing
# campaign. Usage: scripts/fuzz.sh [budget]; the default, 100000x, is 100000 executions per target (about 10 s
# each on 2 cores). A count, not a duration: Go 1.26's fuzz coordinator can fail a duration-bounded run with a
# spurious "context deadline exceeded" at the deadline (golang/go#75804, fixed in Go 1.27).
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${1:-100000x}
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
