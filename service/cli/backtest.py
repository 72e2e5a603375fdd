"""``aiops backtest``: replay a service's history through the production decision path, no ECS call."""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd

from service.cli.common import (
    allow_unsigned_option,
    emit,
    existing_store,
    handle_errors,
    settings_from,
    with_target,
)

SCORE_ROWS = (("incidents", "incidents"), ("actions that would have run", "actions"),
              ("guardrail refusals", "refusals"), ("pages", "pages"),
              ("false pages per week", "false_pages_per_week"), ("action precision", "action_precision"),
              ("action recall", "action_recall"), ("labels detected", "labels_detected"))


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def render(result, with_labels: bool) -> str:
    """Per day for the configured scenario, then every scenario side by side."""
    from tabulate import tabulate

    from service.backtest import per_day

    base = result.runs[0]
    out = [f"{base.start:%Y-%m-%d %H:%M} - {base.end:%Y-%m-%d %H:%M} UTC, replayed minute by minute "
           f"({base.scenario.name}); no ECS call was made", "",
           tabulate(per_day(base).values.tolist(), ["day", "incidents", "causes", "actions",
                                                     "refusals", "pages"], tablefmt="github")]
    scores = result.scores()
    rows = [(label, key) for label, key in SCORE_ROWS
            if with_labels or key not in ("false_pages_per_week", "action_precision", "action_recall",
                                          "labels_detected")]
    table = [[label] + [_cell(s[key]) for s in scores] for label, key in rows]
    out += ["", tabulate(table, ["", *[s["scenario"] for s in scores]], tablefmt="github")]
    if not with_labels:
        out.append("(no operator labels: give --labels FILE, or label incidents with `aiops incidents "
                   "label`, for action precision and recall and false pages per week)")
    return "\n".join(out)


@click.command("backtest")
@with_target
@click.option("--days", default=14, show_default=True, type=click.IntRange(1, 455),
              help="Days of CloudWatch history to replay, up to now.")
@click.option("--history", "history_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Replay this CSV or Parquet (timestamp + metric columns) instead of CloudWatch.")
@click.option("--deployments", "deployments_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="CSV of timestamp,revision: the service's deployment history.")
@click.option("--labels", "labels_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="CSV of start,end,cause [the labelled incidents of the incident log].")
@click.option("--bundle", type=click.Path(path_type=Path), default=None,
              help="Model bundle [the service's champion under the data dir].")
@click.option("--config", "config_path", envvar="AIOPS_CONFIG", type=click.Path(path_type=Path),
              default=None, help="Watch config: guardrails and mode as configured [env AIOPS_CONFIG].")
@click.option("--set", "what_ifs", multiple=True, metavar="KEY=VALUE[,KEY=VALUE]",
              help="A what-if column (repeat for more): threshold, open_after, group_window, mode, "
                   "cooldown.ACTION, max_actions_per_day, skip_after_failures, oom.horizon_minutes ...")
@click.option("--json", "as_json", is_flag=True, help="Print every scenario's scores, days and decisions.")
@allow_unsigned_option
@click.pass_context
@handle_errors
def backtest(ctx, cluster, service, days, history_path, deployments_path, labels_path, bundle,
             config_path, what_ifs, as_json, allow_unsigned) -> None:
    """What automatic remediation would have done on the service's own history.

    Replays the history minute by minute through the watcher as `aiops watch` builds it (the
    service's production detector, the root-cause classifier, the playbook and the guardrails),
    with an ECS adapter that makes no call, and prints per day the incidents, causes, actions,
    guardrail refusals and pages; with labels, action precision and recall and false pages per
    week; each --set as a what-if column beside the configured one.
    """
    from models.bundle import load_bundle
    from rca.playbook import load_playbook
    from service.backtest import (
        Operator,
        base_scenario,
        labels_from_log,
        parse_what_if,
        read_deployments,
        read_labels,
        run_backtest,
    )
    from service.diagnose import load_rca_classifier, read_window_file
    from service.fleet import default_bundle
    from service.watch_config import ServiceConfig, load_watch_config

    settings = settings_from(ctx, cluster=cluster, service=service, allow_unsigned=allow_unsigned)
    target = settings.target
    config = load_watch_config(config_path)
    playbook = load_playbook(settings.playbook)
    changes = [(text, parse_what_if(text)) for text in what_ifs]
    svc = ServiceConfig(cluster=target.cluster, service=target.service, bundle=bundle)
    from service.aws import ClientFactory
    from service.signing import bundle_trust

    factory = ClientFactory()
    trust = bundle_trust(settings, "aiops backtest", factory=factory)
    detector = load_bundle(default_bundle(settings, svc), trust=trust).model
    classifier, _ = load_rca_classifier(settings, playbook, getattr(detector, "threshold", None),
                                        loader="aiops backtest")
    if history_path is not None:
        history = read_window_file(history_path, "--history")
    else:
        from service.cloudwatch import CloudWatchMetrics

        now = settings.clock().floor("min")
        source = CloudWatchMetrics(factory.client("cloudwatch"), settings.metrics, target,
                                   settings.period_seconds)
        history = source.read(now - pd.Timedelta(days=days), now)
    history = history[~history.index.duplicated()].sort_index()
    deployments = read_deployments(deployments_path) if deployments_path else []
    if labels_path is not None:
        labels = read_labels(labels_path, playbook)
    else:
        store = existing_store(settings, required=False)
        labels = [] if store is None else labels_from_log(store, target, history.index[0],
                                                          history.index[-1])
    say = (lambda message: click.echo(message, err=True)) if not as_json else (lambda _: None)
    result = run_backtest(history, detector, classifier, target,
                          base_scenario(settings, config, playbook), changes, deployments, labels,
                          Operator(), progress=say)
    if as_json:
        emit(result.to_dict(), True)
    else:
        click.echo(render(result, bool(labels)))
