#!/usr/bin/env bash
# bench.sh - the main job: GIL vs free-threaded throughput on the same object
# workloads at 1 and 2 threads, in one run. Prints a table and writes
# results/headline.{jsonl,dat,png,svg}. Installs missing Debian packages
# (when root) first. Extra arguments go to the benchmark (e.g. --seconds 2).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
ensure_packages gcc libc6-dev pkg-config meson ninja-build liburcu-dev libck-dev libcmocka-dev gnuplot-nox

setup_build build/release --buildtype=release -Ddebug_level=0 -Dtests=disabled
meson compile -C build/release bench/headline/headline
mkdir -p results
./build/release/bench/headline/headline --json results/headline.jsonl --dat results/headline.dat "$@"
gnuplot -e "dat='results/headline.dat'; out='results/headline'" bench/headline/plot.gp
echo "plots: results/headline.png results/headline.svg; raw results: results/headline.jsonl"
