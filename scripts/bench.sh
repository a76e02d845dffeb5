#!/usr/bin/env bash
# Reruns every benchmark in BENCHMARKS.md and keeps the raw output under target/bench-results/.
# It takes a while (about 15 minutes with the stack runs, more on a busy machine) and is NOT part
# of CI. Numbers on a shared machine are noisy: check `uptime` first and compare like with like.
#
#   scripts/bench.sh                 # everything below
#   scripts/bench.sh micro           # criterion micro-benchmarks only (cargo bench)
#   scripts/bench.sh ingest startup  # any subset of: micro ingest startup stack
#
# Environment:
#   BENCH_OUT=dir         where results go (default target/bench-results/<timestamp>)
#   BENCH_EMULATOR=1      also run the local stack on the Pub/Sub emulator (needs gcloud + Java)
#   BENCH_MULTIPLIERS     rate multipliers of the stack runs (default "1 10 100")
set -euo pipefail
cd "$(dirname "$0")/.."

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(micro ingest startup stack)
for step in "${steps[@]}"; do
  case "$step" in
    micro | ingest | startup | stack) ;;
    *) echo "unknown step $step (expected micro, ingest, startup or stack)" >&2; exit 2 ;;
  esac
done
wants() { [[ " ${steps[*]} " == *" $1 "* ]]; }

out=${BENCH_OUT:-target/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
echo "results in $out"

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "nproc: $(nproc)"
  lscpu | grep -E '^(Model name|Thread\(s\) per core|Core\(s\) per socket|Hypervisor vendor):' || true
  grep MemTotal /proc/meminfo
  echo "uptime: $(uptime)"
  rustc --version
} | tee "$out/machine.txt"

if wants micro; then
  echo "== micro-benchmarks (criterion)"
  cargo bench -p stark-client --bench crypto 2>&1 | tee "$out/micro-crypto.txt"
  cargo bench -p pipeline-service --bench envelope 2>&1 | tee "$out/micro-envelope.txt"
fi

if wants ingest || wants startup || wants stack; then
  echo "== release build (several minutes the first time)"
  cargo build --release -p invoice-sender -p webhook-ingester -p money-sender -p bench -p stark-pipeline
fi

if wants ingest; then
  echo "== ingest load (webhook-ingester in a child process, single-threaded runtime)"
  load=target/release/ingest-load
  {
    echo "--- default: in-memory bus, JSON logs to /dev/null, 8 connections"
    "$load" --duration 10s --max-requests 100000
    echo "--- publisher that drops messages (the ingester's own memory)"
    "$load" --duration 10s --max-requests 100000 --publisher null
    echo "--- no logs"
    "$load" --duration 10s --max-requests 100000 --publisher null --logs off
    echo "--- one connection (latency without queueing)"
    "$load" --duration 10s --max-requests 100000 --connections 1
  } 2>&1 | tee "$out/ingest-load.txt"
fi

if wants startup; then
  echo "== start-up (exec to first 200 on /healthz, idle RSS)"
  target/release/startup --bin-dir target/release --runs 20 2>&1 | tee "$out/startup.txt"
fi

if wants stack; then
  buses=(memory)
  [ "${BENCH_EMULATOR:-0}" = 1 ] && buses+=(emulator)
  for bus in "${buses[@]}"; do
    for multiplier in ${BENCH_MULTIPLIERS:-1 10 100}; do
      echo "== local stack: --bus $bus --rate-multiplier $multiplier"
      log="$out/stack-$bus-x$multiplier"
      status=0
      /usr/bin/time -f "wall_s=%e user_s=%U sys_s=%S max_rss_kib=%M" -o "$log.time" \
        target/release/stark-pipeline run --bus "$bus" --rate-multiplier "$multiplier" \
        --campaign "bench-$bus-x$multiplier-$(date +%s)" >"$log.report" 2>"$log.progress" || status=$?
      echo "exit=$status" >>"$log.time"
      grep -E '^ all |^(PASS|FAIL)' "$log.report" || tail -5 "$log.progress"
      cat "$log.time"
    done
  done 2>&1 | tee "$out/stack.txt"
fi

echo "done: $out"
