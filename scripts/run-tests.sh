#!/usr/bin/env bash
# The README's test command (`make test`) runs this: the suite in two parts.
#  1. everything but the `exclusive` tests, spread over LEARN_TEST_WORKERS pytest-xdist workers (each test
#     isolates itself: its own databases and AMQP namespace, free ports), so two cores are used while one test
#     waits on the bus or a browser;
#  2. the `exclusive` tests alone: they stop or restart the shared PostgreSQL or RabbitMQ, which no other test
#     may see.
# Both parts always run; the exit status is the first failure's. Extra pytest arguments come from PYTEST_ARGS.
set -uo pipefail
cd "$(dirname "$0")/.."
workers="${LEARN_TEST_WORKERS:-2}"
args=(${PYTEST_ARGS:-})
status=0
if [ "$workers" = "0" ] || [ "$workers" = "1" ]; then
  .venv/bin/pytest -q -m "not exclusive" "${args[@]}" || status=$?
else
  echo "Running the suite on $workers parallel workers (LEARN_TEST_WORKERS), then the exclusive tests alone..."
  .venv/bin/pytest -q -n "$workers" --dist loadfile -m "not exclusive" "${args[@]}" || status=$?
fi
# 5 = no tests collected (a PYTEST_ARGS selection without exclusive tests): not a failure.
.venv/bin/pytest -q -m exclusive "${args[@]}"; rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] && [ "$status" -eq 0 ]; then status=$rc; fi
exit "$status"
