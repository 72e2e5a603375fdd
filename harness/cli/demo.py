"""``aiops demo``: the whole loop on the embedded environment, with its scorecard."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import pandas as pd
from tabulate import tabulate

from harness.cli.common import start_option
from service.cli.common import emit, handle_errors, settings_from


@click.command()
@click.option("--faults", default=None,
              help="Comma-separated faults to play (default: the six matrix rows and one that "
                   "escalates).")
@click.option("--seed", default=7, show_default=True, help="Noise seed of the simulation.")
@click.option("--days", default=14, show_default=True, type=click.IntRange(2, 60),
              help="Days of history to fit on (one more is simulated and held back to evaluate).")
@click.option("--detector", type=click.Choice(["ensemble", "robust_z"]), default="ensemble",
              show_default=True, help="The model to train: the ensemble, or the baselines alone.")
@click.option("--speed", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Simulated minutes per second (0: as fast as the machine goes).")
@click.option("--mlflow-uri", default=None,
              help="MLflow tracking URI [a SQLite store in the demo's folder].")
@click.option("--keep-running", is_flag=True,
              help="Afterwards, serve the API and the incident dashboard until Ctrl-C.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535),
              help="Port of the dashboard with --keep-running (127.0.0.1 only).")
@start_option()
@click.option("--json", "as_json", is_flag=True, help="Print the scorecard as JSON.")
@click.pass_context
@handle_errors
def demo(ctx: click.Context, faults: str | None, seed: int, days: int, detector: str, speed: float,
         mlflow_uri: str | None, keep_running: bool, port: int, start: pd.Timestamp,
         as_json: bool) -> None:
    """Run the whole loop on the embedded local environment and print a scorecard."""
    from harness.demo import rows_as_dicts, run_demo

    settings = settings_from(ctx)
    stamp = settings.clock().strftime("%Y%m%dT%H%M%S")   # a folder per run, named when it ran
    settings = settings.model_copy(update={"data_dir": settings.data_dir / f"demo-{stamp}"})
    started = time.monotonic()
    say = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    result = run_demo(settings, faults.split(",") if faults else None, seed=seed, history_days=days,
                      progress=say, detector=detector, mlflow_uri=mlflow_uri, speed=speed, start=start)
    if as_json:
        emit({"scorecard": rows_as_dicts(result.rows), "incident_log": str(result.db_path),
              "false_alarms": result.false_alarms,
              "training": {"status": result.training.status, "run_id": result.training.run_id,
                           "tracking": result.training.tracking,
                           "bundle": str(result.training.deployed)}}, True)
    else:
        _print_scorecard(result, time.monotonic() - started)
    if keep_running:
        _serve(settings, port, say)
    if not all(r.correct for r in result.rows):
        sys.exit(3)


def _print_scorecard(result, seconds: float) -> None:
    headers = ["fault", "start", "detected (delay)", "anomalies", "root cause", "severity",
               "action", "ECS change", "verification (+15 min)", "recovery", "escalation", "OOM kills"]
    table = [[r.fault, r.start, f"{r.detected} ({r.delay_min:.0f} min)" if r.delay_min is not None
              else r.detected, r.anomalies.replace("; ", "\n"), r.root_cause, r.severity, r.action,
              r.ecs_change, r.verification,
              f"{r.recovery_min:.0f} min" if r.recovery_min is not None else "-",
              r.escalation, r.oom_kills] for r in result.rows]
    click.echo("\nScorecard")
    click.echo(tabulate(table, headers=headers, tablefmt="grid", maxcolwidths=[None] * 3 + [34]
                        + [None] * 3 + [26, None, None, 20, None]))
    ok = sum(r.correct for r in result.rows)
    click.echo(f"\n{ok}/{len(result.rows)} faults handled as the playbook says (right cause; fixed "
               f"and verified, or escalated when the fix cannot work; no task OOM-killed); "
               f"{result.false_alarms} false "
               f"alarm(s) in quiet periods; {seconds:.0f} s.")
    click.echo(f"Incident log: {result.db_path}")
    if result.training is not None:
        click.echo(f"Model: {result.training.deployed} (MLflow: "
                   f"{result.training.tracking or 'run ' + str(result.training.run_id)}; "
                   f"`mlflow ui --backend-store-uri sqlite:///{result.run_dir.resolve()}/mlflow.db`)")
    for r in result.rows:
        if r.report:
            html = Path(r.report).with_suffix(".html")
            click.echo(f"Report {r.fault}: {html if html.is_file() else r.report}")
    click.echo(f"Dashboard: `aiops --data-dir {result.run_dir} serve --insecure-no-auth`, then "
               "http://127.0.0.1:8080/ (or run the demo with --keep-running)")


def _serve(settings, port: int, say) -> None:
    """Serve the API and the dashboard on loopback over the demo's incident log until Ctrl-C."""
    import uvicorn

    from service.api import create_app

    say(f"Dashboard: http://127.0.0.1:{port}/  (API docs at /docs; Ctrl-C to stop)")
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
