"""Where the CPU of one ``POST /v1/score`` with ensemble champions goes, in process.

The load benchmark's requests (``harness.loadbench``: 20 services x 5 metrics x 5 points, every
request the same five minutes with other values) are validated and scored through the same use
case as the HTTP route, without HTTP, and the scoring is profiled (cProfile, cumulative time of
the fleet scorer's members). Prints the start-up (the first request without and after
``ServiceModels.warm()``, as ``aiops serve`` starts, and what the garbage collector is left to
walk), ms of CPU per request, then the profile's top lines.

    python scripts/profile_score_request.py [--requests 200] [--services 20]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--lines", type=int, default=40, help="profile lines printed")
    args = parser.parse_args(argv)
    from harness import loadbench

    data = Path(tempfile.mkdtemp(prefix="aiops-score-profile-")) / "data"
    services = loadbench.service_names(args.services)
    loadbench.write_bundles(data / "models", services, "ensemble")
    bodies = loadbench.score_payloads(services, 5, n=20)
    os.environ["AIOPS_DATA_DIR"] = str(data)
    from service import usecases
    from service.api import create_app
    from service.api_schemas import ScoreRequest
    from service.scoring import Series

    def one(body: bytes, ctx) -> list[dict]:
        request = ScoreRequest.model_validate_json(body)
        series = [Series(s.cluster or loadbench.CLUSTER, s.service, s.metric, s.timestamps, s.values)
                  for s in request.series]
        return [r.to_dict() for r in usecases.score(ctx.models, series, ctx.settings)]

    def seconds(call) -> float:
        started = time.perf_counter()
        call()
        return time.perf_counter() - started

    cold = create_app().state.context   # models loaded, nothing stacked: the first request waits
    first_cold = seconds(lambda: one(bodies[0], cold))
    ctx = create_app().state.context    # what `aiops serve` does: warm, collect, freeze
    warming = seconds(ctx.models.warm)
    gc.collect()
    gc.freeze()
    first_warm = seconds(lambda: one(bodies[0], ctx))
    for body in bodies[1:5]:   # the what-if tables of the window's bucket are made on first use
        one(body, ctx)
    gc.collect()
    print(f"start-up: the first request {1000 * first_cold:.0f} ms without warm(); warm() "
          f"{warming:.2f} s (the kernels already loaded), then the first request "
          f"{1000 * first_warm:.0f} ms; after 5 requests {len(gc.get_objects()):,} objects not "
          "frozen (what a full garbage collection walks)")
    started = time.process_time()
    for i in range(args.requests):
        one(bodies[i % len(bodies)], ctx)
    print(f"{1000 * (time.process_time() - started) / args.requests:.1f} ms of CPU per request "
          f"({args.services} services x 5 metrics x 5 points, ensemble champions, in process)")
    profile = cProfile.Profile()
    profile.enable()
    for i in range(args.requests):
        one(bodies[i % len(bodies)], ctx)
    profile.disable()
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.lines)


if __name__ == "__main__":
    main()
