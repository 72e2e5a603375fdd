"""The streaming member's evidence on error_count after an error storm, bucket by bucket.

14 days of simulated history ending Saturday 01:00, then a night with an error trickle (03:00,
6 a minute for 12 minutes), an error storm (03:40, 30 a minute for 12 minutes) and a slow
dependency (04:20, +0.8 s for 30 minutes): the sequence of the calendar sweep. Prints the
member's channels on the 5-minute bucket totals: after the storm the shift channel stays rare
(surprise 2-3) for over an hour, so a bucket of base-rate noise off the bad way beyond the
one-error floor would carry that surprise (the sweep's slow dependencies read as error
trickles) but for the detector's ``min_z``: a bucket's ``surprise`` counts only when the bucket
itself is that many spreads off (``z``; 3 by default, ``--min-z 0`` for none). ``member`` is
the streaming member's raw score of each bucket.

    python scripts/member_after_storm.py [--seed 6]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from detection.streaming import StreamingMember, StreamingUnivariateDetector
from simulation.physics import Conditions, ServiceShape, history, normal_load, service_metrics

START = pd.Timestamp("2026-12-05T01:00:00Z")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--min-z", type=float, default=3.0, help="the detector's min_z [3]")
    args = parser.parse_args(argv)
    shape = ServiceShape()
    past = history(START, 14, shape, np.random.default_rng(11))
    index = pd.date_range(START, periods=360, freq="min")
    cond = Conditions(load=normal_load(index, shape), tasks=np.full(len(index), shape.nominal_tasks))
    night = service_metrics(index, cond, shape, np.random.default_rng(args.seed))
    errors, latency = night.columns.get_loc("error_count"), night.columns.get_loc("response_time")
    night.iloc[120:132, errors] += 6
    night.iloc[160:172, errors] += 30
    night.iloc[200:230, latency] += 0.8
    buckets = pd.concat([past, night])["error_count"].resample("5min").mean()
    detector = StreamingUnivariateDetector(min_z=args.min_z)
    detector.fit_predict_stream(buckets.to_numpy(), buckets.index)
    evidence = detector.evidence_.set_index(buckets.index).assign(errors=buckets.to_numpy() * 5)
    member = StreamingMember(min_z=args.min_z).fit(pd.concat([past, night])[["error_count"]])
    evidence["member"] = member._raw("error_count", buckets.to_numpy(), evidence["residual"].to_numpy(),
                                     evidence["surprise"].to_numpy())
    with pd.option_context("display.width", 200):
        print(evidence.loc["2026-12-05 02:50":"2026-12-05 04:40"].round(3).to_string())


if __name__ == "__main__":
    main()
