#!/usr/bin/env bash
# The test suite under frozen wall-clock dates: every process of the run (pytest, the `aiops`
# commands it starts, moto, Chromium) sees the date through libfaketime, and the clock ticks on
# from it. Results must not depend on the date or hour a run happens on.
#
#   make test-dates                                   # the three default dates
#   scripts/test_dates.sh "2026-12-02 01:00:00" ...   # dates of your own, passed to pytest as-is
set -euo pipefail
cd "$(dirname "$0")/.."
command -v faketime >/dev/null || { echo "faketime is missing: apt-get install faketime (make test-dates does)"; exit 2; }
dates=("$@")
if [ ${#dates[@]} -eq 0 ]; then
  # a Wednesday 01:00 UTC (the failing case of issue 10), a Sunday night, a Monday morning
  dates=("2026-12-02 01:00:00" "2027-01-03 23:30:00" "2027-06-14 07:00:00")
fi
status=0
for date in "${dates[@]}"; do
  echo "=== the suite with the wall clock at $date UTC ==="
  # only the wall clock moves: monotonic clocks (timeouts, event loops) stay real
  if TZ=UTC FAKETIME_DONT_FAKE_MONOTONIC=1 faketime -f "@$date" .venv/bin/python -m pytest -q -p no:cacheprovider; then
    echo "=== $date: passed ==="
  else
    echo "=== $date: FAILED ==="; status=1
  fi
done
exit $status
