#!/usr/bin/env bash
# Reruns every benchmark in BENCHMARKS.md and keeps the raw output under target/bench-results/.
# It takes a while (about 15 minutes with the stack runs, more on a busy machine) and is NOT part
# of CI. Numbers on a shared machine are noisy: check `uptime` first and compare like with like.
#
#   scripts/bench.sh                 # everything below
#   scripts/bench.sh micro           # criterion micro-benchmarks only (cargo bench)
#   scripts/bench.sh ingest startup  # any subset of: micro ingest startup stack seed
#   scripts/bench.sh seed            # side by side with the seed's Python webhook (BENCHMARKS.md §5)
#
# Environment:
#   BENCH_OUT=dir         where results go (default target/bench-results/<timestamp>)
#   BENCH_EMULATOR=1      also run the local stack on the Pub/Sub emulator (needs gcloud + Java)
#   BENCH_MULTIPLIERS     rate multipliers of the stack runs (default "1 10 100"; "1000" is the
#                         issue's 1000x row, played at --speed 180, about 20 minutes or more)
#   BENCH_MAX_RSS_MIB     a stack run whose RSS passes this is stopped and recorded (default 8192)
#   BENCH_SEED_VENV       the seed's virtualenv (default target/seed-venv; built from
#                         crates/bench/seed/requirements.txt when missing or out of date)
#   BENCH_SEED_DURATION   length of each side-by-side wrk run (default 10s)
#   BENCH_SEED_ROUNDS     side-by-side rounds (default 3)
#   BENCH_SEED_INVOICES   distinct webhooks per side-by-side run, one run each (default "1 1000":
#                         the same webhook again and again, then 1000 distinct invoices)
#   CARGO_TARGET_DIR      honoured: binaries are taken from $CARGO_TARGET_DIR/release
#
# The seed step needs python3 (3.11) with venv, PyPI, wrk (apt-get install -y wrk), taskset, two
# cores, and the Pub/Sub emulator (gcloud + Java).
set -euo pipefail
cd "$(dirname "$0")/.."

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(micro ingest startup stack seed)
for step in "${steps[@]}"; do
  case "$step" in
    micro | ingest | startup | stack | seed) ;;
    *) echo "unknown step $step (expected micro, ingest, startup, stack or seed)" >&2; exit 2 ;;
  esac
done
wants() { [[ " ${steps[*]} " == *" $1 "* ]]; }
bin=${CARGO_TARGET_DIR:-target}/release

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
  echo "uncommitted changes: $(git status --short --untracked-files=no 2>/dev/null | wc -l) files"
  git status --short --untracked-files=no 2>/dev/null || true
} | tee "$out/machine.txt"

if wants micro; then
  echo "== micro-benchmarks (criterion)"
  cargo bench -p stark-client --bench crypto 2>&1 | tee "$out/micro-crypto.txt"
  cargo bench -p pipeline-service --bench envelope 2>&1 | tee "$out/micro-envelope.txt"
  cargo bench -p webhook-ingester --bench handler 2>&1 | tee "$out/micro-handler.txt"
fi

packages=()
wants ingest && packages+=(-p bench)
wants startup && packages+=(-p invoice-sender -p webhook-ingester -p money-sender -p bench)
wants stack && packages+=(-p stark-pipeline)
wants seed && packages+=(-p webhook-ingester -p bench)
if [ ${#packages[@]} -gt 0 ]; then
  echo "== release build (several minutes the first time)"
  cargo build --release "${packages[@]}"
fi

if wants ingest; then
  echo "== ingest load (webhook-ingester in a child process, single-threaded runtime)"
  load=$bin/ingest-load
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
  "$bin/startup" --bin-dir "$bin" --runs 20 2>&1 | tee "$out/startup.txt"
fi

if wants stack; then
  buses=(memory)
  [ "${BENCH_EMULATOR:-0}" = 1 ] && buses+=(emulator)
  for bus in "${buses[@]}"; do
    for multiplier in ${BENCH_MULTIPLIERS:-1 10 100}; do
      echo "== local stack: --bus $bus --rate-multiplier $multiplier"
      log="$out/stack-$bus-x$multiplier"
      # From 1000x on, the campaign plays at a quarter of the default speed (the issue's
      # `--speed 180`: 8 minutes of slots), so that the pipeline has a chance to keep up.
      speed=()
      [ "$multiplier" -ge 1000 ] && speed=(--speed 180)
      status=0
      /usr/bin/time -f "wall_s=%e user_s=%U sys_s=%S max_rss_kib=%M" -o "$log.time" \
        "$bin/stark-pipeline" run --bus "$bus" --rate-multiplier "$multiplier" "${speed[@]}" \
        --campaign "bench-$bus-x$multiplier-$(date +%s)" >"$log.report" 2>"$log.progress" &
      timer=$!
      # The memory guard: the stack keeps the whole sandbox in memory, and a run that outgrows
      # BENCH_MAX_RSS_MIB is stopped (and recorded as such) before it takes the shared machine
      # down with it.
      over=""
      max_rss=${BENCH_MAX_RSS_MIB:-8192}
      while kill -0 "$timer" 2>/dev/null; do
        stack_pid=$(pgrep -P "$timer" -x stark-pipeline || true)
        rss=$(awk '/^VmRSS:/ {print int($2 / 1024)}' "/proc/$stack_pid/status" 2>/dev/null || true)
        if [ -n "$rss" ] && [ "$rss" -gt "$max_rss" ]; then
          over="stopped: RSS ${rss} MiB passed BENCH_MAX_RSS_MIB=$max_rss"
          kill -INT "$stack_pid" 2>/dev/null || true
          break
        fi
        sleep 1
      done
      wait "$timer" || status=$?
      echo "exit=$status" >>"$log.time"
      [ -n "$over" ] && echo "$over" | tee -a "$log.time"
      grep -E '^ all |^credit → |^Stark load|^(PASS|FAIL)' "$log.report" || tail -5 "$log.progress"
      cat "$log.time"
    done
  done 2>&1 | tee "$out/stack.txt"
fi

if wants seed; then
  echo "== side by side: webhook-ingester (publishing to the Pub/Sub emulator) vs the seed's Python webhook"
  venv=${BENCH_SEED_VENV:-target/seed-venv}
  requirements=crates/bench/seed/requirements.txt
  # The copy of requirements.txt in the venv says what it was built from.
  if ! cmp -s "$requirements" "$venv/requirements.txt"; then
    echo "building $venv from $requirements"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/requirements.txt"
  fi
  "$venv/bin/python" --version
  "$venv/bin/pip" freeze --disable-pip-version-check | grep -iE '^(starkbank|starkcore|starkbank-ecdsa|flask|gunicorn)=='
  command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
  wrk --version 2>&1 | head -1 || true
  {
    for invoices in ${BENCH_SEED_INVOICES:-1 1000}; do
      echo "--- $invoices distinct invoice(s); servers on CPU 1, this benchmark, wrk and the emulator on CPU 0"
      "$bin/side-by-side" --venv "$venv" --duration "${BENCH_SEED_DURATION:-10s}" \
        --rounds "${BENCH_SEED_ROUNDS:-3}" --invoices "$invoices" \
        --work-dir "$out/side-by-side-$invoices"
    done
    echo "--- ingest-load with the null publisher, against the raw libsecp256k1 verify rate"
    "$bin/ingest-load" --duration 10s --max-requests 100000 --publisher null
  } 2>&1 | tee "$out/side-by-side.txt"
  echo "--- criterion: libsecp256k1 (PublicKey::verify) and k256 verifying the same high-S signature"
  cargo bench -p stark-client --bench crypto -- 'verify_high_s|raw_ecdsa_high_s' 2>&1 | tee "$out/micro-verify-libraries.txt"
  # The micro step, when it ran, already measured this in the same run.
  if ! wants micro; then
    echo "--- criterion: one webhook through the ingester's router in process, with and without logs, and the raw verify"
    cargo bench -p webhook-ingester --bench handler 2>&1 | tee "$out/micro-handler.txt"
  fi
fi

echo "done: $out"
