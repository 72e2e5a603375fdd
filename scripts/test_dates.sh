#!/usr/bin/env bash
# The test suite under other wall-clock dates: every Python process of the run (pytest, the
# `aiops` commands it starts, moto, the notebooks' kernels) sees the date through time-machine,
# started by tests/wallclock/sitecustomize.py, and the clock ticks on from it. Results must not
# depend on the date or hour a run happens on.
#
# Why not libfaketime: it moves the monotonic clock with the wall clock, and Python's lock
# timeouts (sem_clockwait) then never return, so uvicorn's thread is never joined; with
# FAKETIME_DONT_FAKE_MONOTONIC, time.sleep fails with EINVAL (libfaketime 0.9.10).
#
#   make test-dates                                   # the three default dates
#   scripts/test_dates.sh "2026-12-02 01:00:00" ...   # dates of your own, in UTC
set -euo pipefail
cd "$(dirname "$0")/.."
dates=("$@")
if [ ${#dates[@]} -eq 0 ]; then
  # a Wednesday 01:00 UTC (the failing case of issue 10), a Sunday night, a Monday morning
  dates=("2026-12-02 01:00:00" "2027-01-03 23:30:00" "2027-06-14 07:00:00")
fi
status=0
for date in "${dates[@]}"; do
  echo "=== the suite with the wall clock at $date UTC ==="
  shift=$(( $(date -u -d "$date" +%s) - $(date -u +%s) ))
  export AIOPS_TEST_WALL_CLOCK_SHIFT=$shift PYTHONPATH="$PWD/tests/wallclock${PYTHONPATH:+:$PYTHONPATH}"
  seen=$(.venv/bin/python -c 'import datetime as d; print(d.datetime.now(d.timezone.utc).strftime("%Y-%m-%d %H:%M"))')
  [ "$seen" = "${date:0:16}" ] || { echo "the wall clock was not moved (Python sees $seen)"; exit 2; }
  if .venv/bin/python -m pytest -q -p no:cacheprovider; then
    echo "=== $date: passed ==="
  else
    echo "=== $date: FAILED ==="; status=1
  fi
done
unset AIOPS_TEST_WALL_CLOCK_SHIFT
exit $status
