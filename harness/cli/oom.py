"""``aiops benchmark oom``: the time-to-OOM forecast on simulated leaks, beside predict_linear."""

from __future__ import annotations

import sys

import click

from service.cli.common import emit, handle_errors

TARGET_HORIZON, TARGET_ERROR = 30, 0.20   # the bar: within 20% (median) 30 minutes ahead


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def render(result: dict) -> str:
    """The table: per horizon, our errors and interval coverage beside the peer's errors."""
    from tabulate import tabulate

    from harness.oombench import PEER

    rows = [[r["horizon_min"], _pct(r["median_error"]), _pct(r["p90_error"]), r["no_forecast"],
             _pct(r["interval_coverage"]), _pct(r["peer_median_error"]), _pct(r["peer_p90_error"])]
            for r in result["by_horizon"]]
    headers = ["horizon (min)", "median error", "p90 error", "no forecast", "interval covers truth",
               f"{PEER}: median", "p90"]
    return (f"{result['cases']} simulated leaks (seed {result['seed']}), limit {result['limit']:.0f}%; "
            "error = |forecast - truth| / truth, a missing forecast counts 100%\n"
            + tabulate(rows, headers, tablefmt="github"))


@click.command("oom")
@click.option("--cases", default=90, show_default=True, type=click.IntRange(3, 10_000),
              help="Simulated leaks (running-task, sawtooth and rolling-restart shapes in turn).")
@click.option("--seed", default=0, show_default=True, help="Seed of the leaks.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@handle_errors
def oom(cases: int, seed: int, as_json: bool) -> None:
    """How well the time-to-OOM forecast sees an OOM coming, 15 to 120 minutes ahead.

    Exits 3 when the median error 30 minutes ahead is above 20%.
    """
    from harness.oombench import evaluate

    result = evaluate(cases=cases, seed=seed)
    at_target = next(r for r in result["by_horizon"] if r["horizon_min"] == TARGET_HORIZON)
    met = at_target["median_error"] <= TARGET_ERROR
    if as_json:
        emit({k: v for k, v in result.items() if k != "rows"} | {"target_met": met}, True)
    else:
        click.echo(render(result))
        click.echo(f"{TARGET_HORIZON} min ahead: median error {_pct(at_target['median_error'])} "
                   f"(target <= {_pct(TARGET_ERROR)}): {'met' if met else 'NOT met'}")
    if not met:
        click.echo(f"aiops: error: median error {TARGET_HORIZON} min ahead is above "
                   f"{_pct(TARGET_ERROR)}", err=True)
        sys.exit(3)
