"""``aiops benchmark backtest``: the backtest on 14 simulated days of labelled matrix faults."""

from __future__ import annotations

import sys

import click

from service.cli.common import emit, handle_errors


def render(report: dict) -> str:
    from tabulate import tabulate

    days = [[d["day"], d["incidents"], d["causes"], d["actions"], d["refusals"], d["pages"]]
            for d in report["per_day"]]
    s = report["scores"]
    figures = [["labelled faults", report["labelled_faults"]], ["incidents", s["incidents"]],
               ["actions that would have run", s["actions"]], ["correct actions", s["correct_actions"]],
               ["action precision", f"{report['action_precision']:.2f}"],
               ["action recall", f"{report['action_recall']:.2f}"],
               ["false pages per week", f"{report['false_pages_per_week']:.2f}"],
               ["guardrail refusals", s["refusals"]],
               [f"decisions equal to the live watcher's (first {report['live_days_compared']:g} day, "
                f"{report['live_decisions']} decisions)", report["decisions_equal_live"]],
               ["replay time (s)", report["replay_seconds"]]]
    return "\n".join([tabulate(days, ["day", "incidents", "causes", "actions", "refusals", "pages"],
                               tablefmt="github"), "",
                      tabulate(figures, tablefmt="github"),
                      f"detector: {report['detector']}; classifier: {report['classifier']}"])


@click.command("backtest")
@click.option("--days", default=14, show_default=True, type=click.IntRange(1, 60),
              help="Simulated days with faults (after 14 normal days the detector is fitted on).")
@click.option("--seed", default=0, show_default=True, help="Seed of the history and its faults.")
@click.option("--live-days", default=1.0, show_default=True, type=click.FloatRange(0.05, 60),
              help="Days also replayed by the live watcher on CloudWatch (local endpoint) to compare.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@handle_errors
def backtest_benchmark(days: int, seed: int, live_days: float, as_json: bool) -> None:
    """Backtest 14 simulated days with the matrix faults injected and labelled.

    Prints action precision and recall and false pages per week, and whether the replay decided
    exactly as the live watcher reading the same minutes from CloudWatch (exit 3 if not).
    """
    from harness.backtestbench import run

    def say(message: str) -> None:
        click.echo(message, err=True)

    report = run(days=days, seed=seed, live_days=min(live_days, days), progress=say)
    if as_json:
        emit(report, True)
    else:
        click.echo(render(report))
    if not report["decisions_equal_live"]:
        click.echo("aiops: error: the replay's decisions differ from the live watcher's", err=True)
        sys.exit(3)
