"""``aiops demo``: the whole loop on the embedded environment, with its scorecard."""

from __future__ import annotations

import sys
import time

import click
import pandas as pd
from tabulate import tabulate

from service.cli.common import emit, handle_errors, settings_from


@click.command()
@click.option("--faults", default=None, help="Comma-separated faults to play (default: all six).")
@click.option("--seed", default=7, show_default=True, help="Noise seed of the simulation.")
@click.option("--days", default=14, show_default=True, help="Days of history to simulate.")
@click.option("--json", "as_json", is_flag=True, help="Print the scorecard as JSON.")
@click.pass_context
@handle_errors
def demo(ctx: click.Context, faults: str | None, seed: int, days: int, as_json: bool) -> None:
    """Run the whole loop on the embedded local environment and print a scorecard."""
    from service.demo import rows_as_dicts, run_demo

    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S")
    settings = settings_from(ctx)
    settings = settings.model_copy(update={"data_dir": settings.data_dir / f"demo-{stamp}"})
    started = time.monotonic()
    say = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    result = run_demo(settings, faults.split(",") if faults else None, seed=seed,
                      history_days=days, progress=say)
    rows = rows_as_dicts(result.rows)
    if as_json:
        emit({"scorecard": rows, "incident_log": str(result.db_path),
               "false_alarms": result.false_alarms}, True)
    else:
        _print_scorecard(result, time.monotonic() - started)
    if not all(r.correct for r in result.rows):
        sys.exit(3)


def _print_scorecard(result, seconds: float) -> None:
    headers = ["fault", "start", "detected (delay)", "anomalies", "root cause", "severity",
               "action", "ECS change", "verification (+15 min)", "escalation"]
    table = [[r.fault, r.start, f"{r.detected} ({r.delay_min:.0f} min)" if r.delay_min is not None
              else r.detected, r.anomalies.replace("; ", "\n"), r.root_cause, r.severity, r.action,
              r.ecs_change, r.verification, r.escalation] for r in result.rows]
    click.echo("\nScorecard")
    click.echo(tabulate(table, headers=headers, tablefmt="grid", maxcolwidths=[None] * 3 + [34]
                        + [None] * 3 + [26, None, None]))
    ok = sum(r.correct for r in result.rows)
    click.echo(f"\n{ok}/{len(result.rows)} faults diagnosed correctly and verified resolved; "
               f"{result.false_alarms} false alarm(s) in quiet periods; {seconds:.0f} s.")
    click.echo(f"Incident log: {result.db_path}")
    for r in result.rows:
        if r.report:
            click.echo(f"Report {r.fault}: {r.report}")
