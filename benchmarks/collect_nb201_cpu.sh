#!/usr/bin/env bash
# Measure the shipped dataset data/nb201-cpu with the CLI: 1,000 NB201 cells on several CPU platforms,
# then the first 100 again (tag "retest") for test-retest agreement. Resumable: rerun to continue.
# Usage: bash benchmarks/collect_nb201_cpu.sh [DB]   (hwlat installed)
# HWLAT_CPUS=1 pins the single-threaded platforms' worker to core 1; PLATFORMS=2t also measures the
# two-thread platform (run it on an otherwise idle machine: it needs both cores).
set -euo pipefail
cd "$(dirname "$0")/.."
out=data/nb201-cpu
db=${1:-$out/measurements.sqlite}
hwlat_cmd=${HWLAT:-hwlat}
pin=${HWLAT_CPUS:+--cpus $HWLAT_CPUS}
[ -f "$out/archs.txt" ] || python -c "from hwlat.spaces import get_space; print('\n'.join(get_space('nb201').sample(1000, seed=0)))" > "$out/archs.txt"
head -n 100 "$out/archs.txt" > "$out/retest_archs.txt"

platforms=(
  "--runtime onnxruntime --threads 1 --batch 1 $pin"
  "--runtime onnxruntime --threads 1 --batch 8 $pin"
  "--runtime torch --threads 1 --batch 1 $pin"
  "--runtime onnxruntime --threads 1 --batch 1 --optimization disable $pin"
)
if [ "${PLATFORMS:-}" = 2t ]; then
  platforms=("--runtime onnxruntime --threads 2 --batch 1")
fi
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
