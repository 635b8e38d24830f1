#!/bin/sh
# Instructions per call of each bench/verify-micro.ts row, counted by callgrind (immune to the
# timing noise of a shared machine). Every process.cpuUsage() call (uv_getrusage) starts a new
# dump, so the dumps alternate: setup, then per row a timed loop and the step to the next. V8 runs
# single-threaded (no background compilation or GC threads, whose work would land in whichever
# loop was running); the last of ROUNDS rounds is reported, after the JIT has settled.
# Caveats (measured): a row's count moves by up to ~40k instructions/call between runs of the same
# code (JIT tiering, GC timing), so compare runs with the same rows and trust differences well above
# that; and instructions are not time: JS-heavy savings showed up smaller in CPU time than in counts.
#   bench/callgrind-loops.sh OUTDIR primitive,session-proof-rs,verify-session [SAMPLES] [ROUNDS]
set -eu
out=$1 rows=$2 samples=${3:-200} rounds=${4:-2}
mkdir -p "$out"
valgrind --tool=callgrind --dump-before=uv_getrusage --callgrind-out-file="$out/cg.%p" \
  node --single-threaded --expose-gc --import tsx "$(dirname "$0")/verify-micro.ts" --samples "$samples" --rounds "$rounds" --only "$rows" >"$out/valgrind.log" 2>&1
dumps=$(ls "$out"/cg.*.* | sort -t. -k3 -n)
# Dump 1 is the setup; then every pass (the warm-up and ROUNDS rounds) has 2 dumps per row: its loop, then the step to the next.
n=$(echo "$rows" | tr ',' '\n' | wc -l)
i=0
for row in $(echo "$rows" | tr ',' ' '); do
  i=$((i + 1))
  f=$(echo "$dumps" | sed -n "$((2 * n * rounds + 2 * i))p")
  total=$(grep -m1 '^summary:' "$f" | cut -d' ' -f2)
  echo "$row $((total / samples)) instructions/call"
done
