#!/usr/bin/env bash
# The project's whole check, exactly as CI runs it: format, lints, and every test.
#
# Tests that need Google's Pub/Sub emulator get one started here (and stopped on exit, even on
# failure or Ctrl-C), announced to them through PUBSUB_EMULATOR_HOST. Under CI=true a missing
# emulator is an error, never a silent skip.
set -euo pipefail
cd "$(dirname "$0")/.."

emulator_pid=""
emulator_log=""
cleanup() {
  if [ -n "$emulator_pid" ]; then
    # The emulator is a shell wrapper around a java process: stop the whole process group.
    kill -TERM -- "-$emulator_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 -- "-$emulator_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$emulator_pid" 2>/dev/null || true
  fi
  [ -n "$emulator_log" ] && rm -f "$emulator_log"
  return 0
}
trap cleanup EXIT INT TERM

start_emulator() {
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  emulator_log=$(mktemp)
  setsid gcloud beta emulators pubsub start --host-port="127.0.0.1:$port" --project=local-test \
    >"$emulator_log" 2>&1 &
  emulator_pid=$!
  for _ in $(seq 1 600); do
    if curl -fs "http://127.0.0.1:$port/v1/projects/local-test/topics" >/dev/null 2>&1; then
      export PUBSUB_EMULATOR_HOST="127.0.0.1:$port" PUBSUB_PROJECT_ID=local-test
      echo "Pub/Sub emulator ready on $PUBSUB_EMULATOR_HOST"
      return 0
    fi
    if ! kill -0 "$emulator_pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "error: the Pub/Sub emulator did not start; its log:" >&2
  cat "$emulator_log" >&2
  return 1
}

if command -v gcloud >/dev/null 2>&1 && command -v java >/dev/null 2>&1; then
  start_emulator
elif [ "${CI:-}" = "true" ]; then
  echo "error: CI=true but gcloud (with the pubsub emulator) or java is missing" >&2
  exit 1
else
  echo "warning: no Pub/Sub emulator (gcloud + java); emulator tests will report that they skipped" >&2
fi

bash deploy/test.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
