#!/usr/bin/env bash
# Measure the shipped dataset data/nb201-cpu with the CLI: 1,000 NB201 cells on four CPU platforms,
# then the first 100 again (tag "retest") for test-retest agreement. Resumable: rerun to continue.
# Usage: bash benchmarks/collect_nb201_cpu.sh [DB]   (hwlat installed; takes about an hour on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
out=data/nb201-cpu
db=${1:-$out/measurements.sqlite}
hwlat_cmd=${HWLAT:-hwlat}
[ -f "$out/archs.txt" ] || python -c "from hwlat.spaces import get_space; print('\n'.join(get_space('nb201').sample(1000, seed=0)))" > "$out/archs.txt"
head -n 100 "$out/archs.txt" > "$out/retest_archs.txt"

platforms=(
  "--runtime onnxruntime --threads 1 --batch 1"
  "--runtime onnxruntime --threads 2 --batch 1"
  "--runtime torch --threads 1 --batch 1"
  "--runtime onnxruntime --threads 1 --batch 8"
)
for platform in "${platforms[@]}"; do
  # shellcheck disable=SC2086
  $hwlat_cmd profile --archs "$out/archs.txt" $platform --db "$db"
done
for platform in "${platforms[@]}"; do
  # shellcheck disable=SC2086
  $hwlat_cmd profile --archs "$out/retest_archs.txt" $platform --db "$db" --tag retest
done
$hwlat_cmd data export --db "$db" --out "$out/measurements.csv"
$hwlat_cmd data summary --db "$db"
