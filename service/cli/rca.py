"""``aiops rca`` and ``aiops train-rca``: diagnose an incident's root cause; train the classifier.

``aiops rca`` takes the operator's payload (``--payload JSON`` or ``--payload @file``) or a
metric window against a history (``--history H.csv --window W.csv``) and prints the diagnosis
contract. It uses the same classifier as the HTTP API, the Lambda handler and the watcher: a
model retrained under the data dir, else the model shipped with the package; it never trains
(``aiops train-rca`` does). ``--rules`` uses the rule-only baseline instead. Bad input is a
usage error: one line naming the field, exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from service.cli.common import (
    allow_unsigned_option,
    emit,
    handle_errors,
    mlflow_options,
    settings_from,
    track,
)

BAD_INPUT_EXIT = 2


def _to_stderr(message: str) -> None:
    click.echo(message, err=True)


def _bad_input(message: str) -> None:
    click.echo(f"aiops: error: {message}", err=True)
    sys.exit(BAD_INPUT_EXIT)


def _read_payload(text: str):
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = sys.stdin.read() if text == "@-" else path.read_text()
        except OSError as exc:
            _bad_input(f"--payload: cannot read {path}: {exc.strerror}")
    from rca.payload import PayloadError
    from service.requests import load_json

    try:
        return load_json(text, "--payload")
    except PayloadError as exc:
        _bad_input(str(exc))


def _classifier(settings, playbook, use_rules: bool):
    from rca.rules import RuleClassifier
    from service.diagnose import load_rca_classifier

    if use_rules:
        return RuleClassifier(playbook, threshold=settings.threshold), "rules (--rules)"
    return load_rca_classifier(settings, playbook, loader="aiops rca")


@click.command()
@click.option("--payload", default=None, metavar="JSON|@FILE",
              help='The operator payload, e.g. \'{"anomalies":["CPU: 60% (expected 4%)"],'
                   '"metrics":{"cpu_utilization":60}}\', or @file (@- for stdin).')
@click.option("--history", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="CSV of metric history (timestamp + canonical metric columns) to fit baselines on.")
@click.option("--window", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="CSV of the incident's metric window, same columns as --history.")
@click.option("--deployed-minutes-ago", type=click.FloatRange(min=0), default=None,
              help="With --window: minutes since the service's last deployment.")
@click.option("--oom-stopped", type=click.IntRange(min=0), default=None,
              help="With --window: tasks stopped with OutOfMemory in the last hour.")
@click.option("--rules", "use_rules", is_flag=True, help="Use the rule-only baseline classifier.")
@click.option("--no-train", is_flag=True, hidden=True,
              help="Accepted for old scripts; nothing is trained on first use any more.")
@click.option("--train-services", type=click.IntRange(10, 100_000), default=None, hidden=True,
              help="Accepted for old scripts; ignored (`aiops train-rca --services N` retrains).")
@click.option("--report-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write the RCA report here: Markdown, HTML, one PNG per involved metric.")
@click.option("--email-to", multiple=True, help="Send the report by SES to this address (repeatable).")
@click.option("--email-from", envvar="AIOPS_MAIL_FROM", default=None,
              help="The SES-verified sender [env AIOPS_MAIL_FROM].")
@click.option("--json", "as_json", is_flag=True, help="Print the diagnosis as JSON.")
@allow_unsigned_option
@click.pass_context
@handle_errors
def rca(ctx, payload, history, window, deployed_minutes_ago, oom_stopped, use_rules, no_train,
        train_services, report_dir, email_to, email_from, as_json, allow_unsigned) -> None:
    """Name the root cause of an incident, with severity, actions, confidence and evidence."""
    from rca.features import EcsContext
    from rca.payload import PayloadError, parse_payload
    from rca.playbook import load_playbook

    if (payload is None) == (history is None and window is None):
        _bad_input("give either --payload, or --history and --window")
    if payload is None and (history is None or window is None):
        _bad_input(f"--{'window' if window is None else 'history'} is needed too")
    if email_to and not email_from:
        _bad_input("--email-to needs --email-from (or AIOPS_MAIL_FROM): an SES-verified sender")
    settings = settings_from(ctx, allow_unsigned=allow_unsigned)
    playbook = load_playbook(settings.playbook)
    try:
        if payload is not None:
            from service import usecases
            from service.bootstrap import build_platform

            data = _read_payload(payload)
            rules = _classifier(settings, playbook, True)[0] if use_rules else None
            platform = build_platform(settings, classifier=rules, door="aiops rca")
            diagnosis, source = usecases.diagnose(platform, data)
            source = "rules (--rules)" if use_rules else source
            texts = [_render(a) for a in parse_payload(data).anomalies]
            plots = {}
        else:
            from service.diagnose import diagnose_window, read_window_file
            context = EcsContext(minutes_since_deployment=deployed_minutes_ago,
                                 oom_stopped_tasks=oom_stopped)
            frames = read_window_file(history, "history"), read_window_file(window, "window")
            classifier, source = _classifier(settings, playbook, use_rules)
            result = diagnose_window(*frames, classifier, settings, context)
            diagnosis, texts = result.diagnosis, [a.render() for a in result.anomalies]
            plots = _plots(result, diagnosis.to_dict())
    except PayloadError as exc:
        _bad_input(str(exc))
    out = diagnosis.to_dict()
    if report_dir is not None or email_to:
        out["report"] = _report(out, texts, plots, report_dir, list(email_to), email_from)
    if as_json:
        emit({**out, "classifier": source}, True)
        return
    rows = [["root cause", out["root_cause"]], ["severity", out["severity"]],
            ["auto action", out["auto_action"]], ["manual action", out["manual_action"]],
            ["confidence", f"{out['confidence']:.2f}"], ["explanation", out["explanation"]]]
    rows += [[f"evidence: {e['feature']}", f"{e['value']:.4g}" + (
        f" (expected {e['expected']:.4g})" if e.get("expected") is not None else "")]
             for e in out["evidence"]]
    rows.append(["classifier", source])
    for key, value in (out.get("report") or {}).items():
        rows.append([f"report {key}", value])
    emit(out, False, rows)


def _render(anomaly) -> str:
    from detection.metrics import spec_for

    spec = spec_for(anomaly.metric)
    value, expected = spec.format_value(anomaly.value), spec.format_value(anomaly.expected)
    return f"{spec.label}: {value} (expected {expected})"


def _plots(result, diagnosis: dict) -> dict[str, bytes]:
    from rca.plots import involved_metrics, metric_plot

    metrics = involved_metrics(result.anomalies, diagnosis.get("evidence") or [],
                               list(result.window.columns))
    return {m: metric_plot(m, result.window[m], result.centre[m], result.lower[m], result.upper[m],
                           result.anomalies) for m in metrics}


def _report(diagnosis: dict, anomalies: list[str], plots: dict[str, bytes], directory: Path | None,
            recipients: list[str], sender: str | None) -> dict:
    """Write the report files and/or e-mail the report; what was done, for the output."""
    from rca.report import render_diagnosis_markdown, render_html

    title = "Root-cause analysis"
    done: dict = {}
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        names = {m: f"rca-{m}.png" for m in plots}
        for metric, png in plots.items():
            (directory / names[metric]).write_bytes(png)
        (directory / "rca.md").write_text(render_diagnosis_markdown(diagnosis, anomalies, names, title))
        (directory / "rca.html").write_text(render_html(title, diagnosis, anomalies, plots))
        done["markdown"] = str(directory / "rca.md")
        done["html"] = str(directory / "rca.html")
    if recipients:
        from service.aws import ClientFactory
        from service.cli.common import fail
        from service.mail import MailError, SesMailer

        mailer = SesMailer(ClientFactory().client("ses"), sender)
        subject = f"RCA: {diagnosis['root_cause']} ({diagnosis['severity']})"
        try:
            done["email_message_id"] = mailer.send(
                recipients, subject, render_diagnosis_markdown(diagnosis, anomalies, None, title),
                render_html(title, diagnosis, anomalies, plots))
        except MailError as exc:
            fail(str(exc).splitlines()[0])
    return done


@click.command("train-rca")
@click.option("--services", type=click.IntRange(10, 100_000), default=None,
              help="Simulated services to draw incidents from (about 5 incidents each) [600].")
@click.option("--model", "kind", type=click.Choice(["linear", "hgb", "forest", "logistic"]), default="linear",
              show_default=True,
              help="The classifier (see `aiops benchmark rca`); linear is the shipped kind.")
@click.option("--seed", type=click.IntRange(0, 10_000), default=0, show_default=True,
              help="Which training services: seeds 1,000,000 + N x services onwards. The shipped model "
                   "is --seed 0 --services 600 --no-labels.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the linear model here [DATA_DIR/models/rca/model-linear.json]; "
                   "rca/model-linear-v2.json refreshes the shipped one.")
@click.option("--no-labels", is_flag=True, help="Leave out the operator labels of the incident log.")
@click.option("--jobs", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Processes simulating incidents.")
@click.option("--json", "as_json", is_flag=True)
@mlflow_options
@click.pass_context
@handle_errors
def train_rca(ctx, services, kind, seed, out, no_labels, jobs, as_json, mlflow_uri, experiment) -> None:
    """Train the root-cause classifier and save it under the data dir (models/rca); from then on
    every door uses it instead of the shipped model.

    Logged to MLflow (experiment rca-training: parameters, class counts, the bundle's files) when
    a tracking URI is set.
    """
    from rca.playbook import load_playbook
    from service.diagnose import train_rca as train
    from training.rca_train import log_training_to_mlflow

    settings = settings_from(ctx)
    say = _to_stderr
    _, info, path = train(settings, load_playbook(settings.playbook), services, kind,
                          use_labels=not no_labels, n_jobs=jobs, progress=say, seed=seed, out=out)
    summary = {"bundle": str(path), "model": info.kind, "simulated_incidents": info.n_simulated,
               "operator_labels": info.n_labels, "services": info.n_services,
               "seeds": f"{info.seeds[0]}-{info.seeds[1]}", "seconds": info.seconds,
               "classes": info.class_counts}
    summary["mlflow_run_id"] = track(lambda i, uri, exp: log_training_to_mlflow(i, path, uri, exp), info,
                                     mlflow_uri, experiment, "rca-training", as_json)
    emit(summary, as_json, [[k, v] for k, v in summary.items()])
