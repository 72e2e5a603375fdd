"""``aiops benchmark``: benchmarks that print their figures and log them to MLflow when asked.

Each benchmark is a subcommand of the ``benchmark`` group (``nab`` here); add another with
``@benchmark.command("name")`` in this module, using ``mlflow_options`` and ``track`` for the
shared tracking behaviour.
"""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.common import start_option
from service.cli.common import UtcTime, emit, fail, handle_errors, mlflow_options, settings_from, track


@click.group()
def benchmark() -> None:
    """Run a benchmark, print its table, and log it to MLflow when a tracking URI is set."""


@benchmark.command("nab")
@click.option("--root", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The NAB corpus folder [env AIOPS_NAB_ROOT; ../shared/data/nab].")
@click.option("--detector", default=None,
              help="Streaming detector to replay (see training/nab_benchmark.py DETECTORS).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@mlflow_options
@handle_errors
def nab(root: Path | None, detector: str | None, as_json: bool, mlflow_uri: str | None,
        experiment: str | None) -> None:
    """Replay a detector over the NAB corpus as a stream and score it beside the five peers.

    Prints Standard / Low FP / Low FN for our detector and the published peers (NAB's rules,
    threshold optimised over the corpus, null detector 0, perfect 100), then the rows per
    second of the streaming replay.
    """
    from training.nab_benchmark import DEFAULT_DETECTOR, DETECTORS, log_to_mlflow, run_nab_benchmark

    name = detector or DEFAULT_DETECTOR
    if name not in DETECTORS:
        raise click.BadParameter(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}",
                                 param_hint="--detector")
    report = run_nab_benchmark(root, name)
    if not as_json:
        click.echo(report.render())
        click.echo(report.summary())
    run_id = track(log_to_mlflow, report, mlflow_uri, experiment, "nab-benchmark", as_json)
    if as_json:
        emit({**report.to_dict(), "mlflow_run_id": run_id}, True)


def _to_stderr(message: str) -> None:
    click.echo(message, err=True)


def run_folder(ctx: click.Context, kind: str) -> Path:
    """A new folder for one run's incident log, under the data dir, named by when it ran."""
    settings = settings_from(ctx)
    return settings.data_dir / f"{kind}-{settings.clock():%Y%m%dT%H%M%S}"


@benchmark.command("rca")
@click.option("--train-services", type=click.IntRange(10, 100_000), default=None,
              help="Simulated services (training seeds) to train on [600, about 3,000 incidents].")
@click.option("--test-services", type=click.IntRange(10, 100_000), default=None,
              help="Simulated services (held-out seeds) to test on [200, about 1,000 incidents].")
@click.option("--model", "kind", type=click.Choice(["linear", "hgb", "forest", "logistic"]), default="linear",
              show_default=True, help="The classifier to train and test (linear: the shipped kind).")
@click.option("--seed", type=click.IntRange(0, 10_000), default=0, show_default=True,
              help="Which training services (as `aiops train-rca --seed`).")
@click.option("--model-file", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="Score this linear model file (e.g. an earlier shipped one) instead of training one; "
                   "no cross-validated row then.")
@click.option("--dev-set", type=click.Path(path_type=Path, file_okay=False), default=None,
              envvar="AIOPS_RCA_DEV_SET",
              help="A folder of labelled real-system windows (history.csv, window.csv, truth.json "
                   "each; e.g. rca-dev) scored beside the simulator [env AIOPS_RCA_DEV_SET].")
@click.option("--jobs", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Processes simulating incidents.")
@click.option("--start", type=UtcTime(), default=None,
              help="Origin of the simulated calendar (ISO 8601) [2026-03-02T00:00Z]: each simulated "
                   "service's history ends 0-27 days after it, so every weekday and hour occurs.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@mlflow_options
@click.pass_context
@handle_errors
def rca(ctx: click.Context, train_services: int | None, test_services: int | None, kind: str, seed: int,
        model_file: Path | None, dev_set: Path | None, jobs: int, start, as_json: bool,
        mlflow_uri: str | None, experiment: str | None) -> None:
    """The root-cause classifier beside the rule-only baseline: simulator, real windows, seed payloads.

    Trains on training seeds (or takes --model-file), tests both classifiers on the same incidents
    from seeds never used in training, on the training incidents by grouped cross-validation
    (each answered by a model that never saw its simulated service), on the seed-format payloads
    and on --dev-set, and prints side by side exact
    accuracy, accuracy among answered, macro-F1, abstention and harmful actions, the model's
    coverage vs accuracy by confidence floor, then the simulator's per-cause recall and
    confusion matrices.
    """
    from rca.payload import PayloadError
    from rca.playbook import load_playbook
    from service.diagnose import read_window_file
    from training.rca_benchmark import (
        DEFAULT_TEST_SERVICES,
        log_to_mlflow,
        render,
        seed_payload_set,
        summary,
        to_dict,
    )
    from training.rca_benchmark import benchmark as run_benchmark
    from training.rca_dataset import START
    from training.rca_dev import DevSetError
    from training.rca_dev import dev_set as load_dev_set
    from training.rca_train import DEFAULT_SERVICES

    settings = settings_from(ctx)
    say = _to_stderr
    playbook = load_playbook(settings.playbook)
    sets = []
    if dev_set is not None:
        try:
            sets.append(load_dev_set(dev_set, read_window_file, settings.threshold, settings.group_window))
        except (DevSetError, PayloadError) as exc:
            fail(f"--dev-set: {exc}")
    else:
        say("rca-dev: not scored (give --dev-set DIR or AIOPS_RCA_DEV_SET)")
    sets.append(seed_payload_set(playbook))
    classifier = None
    if model_file is not None:
        from rca.classifier import TrainedClassifier
        from rca.linear import LinearModel, ModelFileError

        try:
            classifier = TrainedClassifier(LinearModel.load(model_file), playbook)
        except ModelFileError as exc:
            fail(f"--model-file: {exc}")
    result = run_benchmark(playbook, train_services or DEFAULT_SERVICES,
                           test_services or DEFAULT_TEST_SERVICES, kind, classifier=classifier,
                           threshold=settings.threshold,
                           n_jobs=jobs, progress=say, start=start or START, sets=sets, seed=seed)
    if not as_json:
        click.echo(render(result))
        click.echo(summary(result))
    run_id = track(log_to_mlflow, result, mlflow_uri, experiment, "rca-benchmark", as_json)
    if as_json:
        emit({**to_dict(result), "mlflow_run_id": run_id}, True)


@benchmark.command("training")
@click.option("--services", type=click.IntRange(1, 100_000), default=200, show_default=True,
              help="Simulated services of 5 metrics each (200 = 1,000 series).")
@click.option("--days", type=click.IntRange(1, 60), default=14, show_default=True,
              help="Days of one-minute history per series.")
@click.option("--detector", type=click.Choice(["ensemble", "robust_z"]), default="ensemble",
              show_default=True,
              help="What to fit: the full ensemble aiops train fits, or the baselines only.")
@click.option("--n-jobs", default=-1, show_default=True, help="Parallel fits (-1: one per core).")
@click.option("--backend", type=click.Choice(["loky", "dask", "sequential"]), default="loky",
              show_default=True)
@click.option("--stl-sample", type=click.IntRange(1, 50), default=2, show_default=True,
              help="Series the naive STL(period=1440) baseline is timed on (about 20 s each).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@mlflow_options
@handle_errors
def training(services: int, days: int, detector: str, n_jobs: int, backend: str, stl_sample: int,
             as_json: bool, mlflow_uri: str | None, experiment: str | None) -> None:
    """Fit many one-minute series at once, against naive STL(period=1440) timed in the same run.

    Prints the fit's wall time, points/s, peak memory of the process and its workers, and the
    ratio to the naive baseline extrapolated from a sample (target: 1,000 series of 14 days in
    at most 60 s and 4 GB on 2 cores).
    """
    from training.fit_benchmark import log_to_mlflow, run_fit_benchmark

    report = run_fit_benchmark(services, days, detector, n_jobs, backend, stl_sample,
                               progress=_to_stderr)
    if not as_json:
        click.echo(report.render())
    run_id = track(log_to_mlflow, report, mlflow_uri, experiment, "training-benchmark", as_json)
    if as_json:
        emit({**report.to_dict(), "mlflow_run_id": run_id}, True)


@benchmark.command("soak")
@click.option("--incidents", default=1000, show_default=True, type=click.IntRange(1, 100_000),
              help="Simulated incidents to play.")
@click.option("--seed", default=7, show_default=True, help="Seed of the simulated world.")
@click.option("--start", type=UtcTime(), default=None,
              help="Simulated start (ISO 8601) [2026-11-02T00:00Z, a Monday].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
@handle_errors
def soak(ctx: click.Context, incidents: int, seed: int, start, as_json: bool) -> None:
    """Guardrails under a soak of simulated incidents of every kind; exits 1 on any breach.

    Nine services on the local AWS endpoint, the real watcher, remediator and incident log, a
    simulated on-call engineer and alarm-triggered rollbacks; an auditor checks every mutating
    ECS call against the rules. Prints actions, refusals by reason, and breaches (must be 0).
    """
    from harness.soak import SOAK_START, render, run_soak

    data_dir = run_folder(ctx, "soak")
    report = run_soak(data_dir, incidents=incidents, seed=seed, progress=_to_stderr,
                      start=start or SOAK_START)
    emit(report.to_dict(), as_json)
    if not as_json:
        click.echo(render(report))
        click.echo(f"Incident log: {data_dir / 'incidents.sqlite'}")
    if report.breaches or report.lost:
        fail(f"{len(report.breaches)} guardrail breach(es), {report.lost} incident(s) lost")


@benchmark.command("ha")
@click.option("--incidents", default=300, show_default=True, type=click.IntRange(1, 100_000),
              help="Simulated incidents to play.")
@click.option("--replicas", default=3, show_default=True, type=click.IntRange(2, 20),
              help="Watcher replicas sharing the fleet.")
@click.option("--kill-rate", default=0.02, show_default=True, type=click.FloatRange(0, 1),
              help="Chance, each busy simulated minute, that a replica is killed.")
@click.option("--seed", default=7, show_default=True, help="Seed of the simulated world.")
@click.option("--start", type=UtcTime(), default=None,
              help="Simulated start (ISO 8601) [2026-11-02T00:00Z, a Monday].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
@handle_errors
def ha(ctx: click.Context, incidents: int, replicas: int, kill_rate: float, seed: int, start,
       as_json: bool) -> None:
    """Several watcher replicas share the fleet through leases in DynamoDB while replicas die.

    The soak's world on the local AWS endpoint, watched by --replicas processes sharing the
    DynamoDB incident log, with the rollback Lambda firing on the same services; one replica is
    killed at random moments (between ticks, or after ECS took its action). Prints double
    actions, lost incidents, guardrail breaches (each must be 0) and the takeover time.
    """
    from harness.habench import render, run_ha
    from harness.soak import SOAK_START

    data_dir = run_folder(ctx, "ha")
    report = run_ha(data_dir, incidents=incidents, replicas=replicas, seed=seed, kill_rate=kill_rate,
                    progress=_to_stderr, start=start or SOAK_START)
    emit(report.to_dict(), as_json)
    if not as_json:
        click.echo(render(report))
    if report.double_actions or report.breaches or report.lost:
        fail(f"{report.double_actions} double action(s), {report.breaches} guardrail breach(es), "
             f"{report.lost} incident(s) lost")


@benchmark.command("faults")
@click.option("--rate", default=0.2, show_default=True, type=click.FloatRange(0, 0.9),
              help="Share of the platform's AWS calls that fail, for the transient kinds.")
@click.option("--api-faults", default=None,
              help="Comma-separated API fault plans [all: throttling, server_error, timeout, "
                   "ecs_access_denied, cloudwatch_access_denied_10min].")
@click.option("--faults", default=None, help="Comma-separated matrix faults [all six].")
@click.option("--days", default=3, show_default=True, type=click.IntRange(1, 14),
              help="Days of history behind the baselines.")
@click.option("--seed", default=11, show_default=True)
@start_option()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
@handle_errors
def faults(ctx: click.Context, rate: float, api_faults: str | None, faults: str | None, days: int,
           seed: int, start, as_json: bool) -> None:
    """Every matrix fault while the platform's AWS calls fail; exits 1 if an incident is lost.

    Throttling, 5xx and read timeouts on a share of the calls (botocore retries them), the ECS
    permissions missing, and CloudWatch refusing for ten minutes. Prints each incident's
    outcome (remediated or escalated), the retries and the most attempts any call took.
    """
    import logging

    from harness.faultbench import PLANS, render, run_fault_benchmark
    from simulation.faults import FAULTS

    logging.getLogger("aiops").setLevel(logging.CRITICAL)  # the figures, not a log line per fault
    data_dir = run_folder(ctx, "faults")
    report = run_fault_benchmark(
        data_dir, rate=rate, api_faults=tuple(api_faults.split(",")) if api_faults else tuple(PLANS),
        faults=tuple(faults.split(",")) if faults else tuple(FAULTS), seed=seed, history_days=days,
        progress=_to_stderr, start=start)
    emit(report.to_dict(), as_json)
    if not as_json:
        click.echo(render(report))
        click.echo(f"Incident log: {data_dir / 'incidents.sqlite'}")
    if report.lost:
        fail(f"{report.lost} incident(s) lost")


@benchmark.command("calendar")
@click.option("--detector", type=click.Choice(["ensemble", "robust_z"]), default="ensemble",
              show_default=True, help="The model trained in each cell (ensemble: what aiops train fits).")
@click.option("--days", default="3,7,14", show_default=True,
              help="Comma-separated history lengths in days.")
@click.option("--weekdays", default="Mon,Tue,Wed,Thu,Fri,Sat,Sun", show_default=True,
              help="Comma-separated start weekdays (of the week of 2026-11-30).")
@click.option("--hours", default="1,7,13,19", show_default=True,
              help="Comma-separated start hours (UTC).")
@click.option("--faults", default=None, help="Comma-separated matrix faults [all seven].")
@click.option("--api-faults", type=click.Choice(["rotate", "none"]), default="rotate", show_default=True,
              help="rotate: each fault under one of the fault benchmark's API fault plans in turn.")
@click.option("--rate", default=0.2, show_default=True, type=click.FloatRange(0, 0.9),
              help="Share of the platform's AWS calls that fail, for the transient kinds.")
@click.option("--quiet-minutes", default=120, show_default=True, type=click.IntRange(0, 10_080),
              help="Quiet minutes before the faults of each cell (false alarms are counted there).")
@click.option("--seed", default=11, show_default=True, help="Seed of the first cell (then one more each).")
@click.option("--jobs", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Cells played at once, each in a process of its own.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
@handle_errors
def calendar(ctx: click.Context, detector: str, days: str, weekdays: str, hours: str, faults: str | None,
             api_faults: str, rate: float, quiet_minutes: int, seed: int, jobs: int, as_json: bool) -> None:
    """The matrix faults at start times over the whole week, with thin and full histories.

    Each cell (weekday x hour x history length) trains the detector on its own history, runs
    quiet (false alarms), then plays every fault while the platform's AWS calls fail. Prints
    handled / lost / false alarms per cell and totals per history length; exits 1 when a cell
    with 3 or more days of history lost a fault or did not handle one.
    """
    import logging

    from harness.calendarbench import WEEKDAYS, render, run_calendar, sweep
    from simulation.faults import FAULTS

    logging.getLogger("aiops").setLevel(logging.CRITICAL)  # the figures, not a log line per fault
    cells = sweep(_choices(weekdays, WEEKDAYS, "--weekdays"), _integers(hours, "--hours", 0, 23),
                  _integers(days, "--days", 1, 60))
    report = run_calendar(run_folder(ctx, "calendar"), cells, detector,
                          tuple(faults.split(",")) if faults else tuple(FAULTS), api_faults, rate,
                          quiet_minutes, seed, jobs, progress=_to_stderr)
    if as_json:
        emit(report.to_dict(), True)
    else:
        click.echo(render(report))
        click.echo(f"Incident logs under {report.details['log']}")
    if report.failures:
        fail(f"{len(report.failures)} cell(s) with a fault lost or not handled: {', '.join(report.failures)}")


def _integers(text: str, option: str, low: int, high: int) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"not a comma-separated list of integers: {text!r}",
                                 param_hint=option) from None
    bad = [v for v in values if not low <= v <= high]
    if not values or bad:
        raise click.BadParameter(f"need values in {low}..{high}, got {text!r}", param_hint=option)
    return values


def _choices(text: str, known: tuple[str, ...], option: str) -> list[int]:
    names = [v.strip().capitalize()[:3] for v in text.split(",") if v.strip()]
    bad = [n for n in names if n not in known]
    if not names or bad:
        raise click.BadParameter(f"unknown weekday(s) {', '.join(bad) or text!r}; known: {', '.join(known)}",
                                 param_hint=option)
    return [known.index(n) for n in names]


@benchmark.command("load")
@click.option("--rate", default=200.0, show_default=True, type=click.FloatRange(min=1, max=2000),
              help="Requests per second (open loop).")
@click.option("--seconds", default=60.0, show_default=True, type=click.FloatRange(min=1, max=600),
              help="How long each server is loaded.")
@click.option("--series", default=100, show_default=True, type=click.IntRange(5, 1000),
              help="Series per request (each service sends its 5 metrics).")
@click.option("--points", default=5, show_default=True, type=click.IntRange(1, 1440),
              help="Points per series.")
@click.option("--detector", type=click.Choice(["robust_z", "ensemble"]), default="robust_z",
              show_default=True, help="What the services' champion models are.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def load(rate: float, seconds: float, series: int, points: int, detector: str, as_json: bool) -> None:
    """POST /v1/score on loopback: `aiops serve` beside a bare FastAPI endpoint, same requests.

    Starts each server on 127.0.0.1 in turn, sends --rate requests/s for --seconds from an async
    httpx client and prints errors, p50/p99 latency and the server's RSS at start and end; the
    ratio shows what our validation and scoring cost over FastAPI itself.
    """
    from harness.loadbench import run_load_benchmark

    report = run_load_benchmark(rate, seconds, series, points, detector, progress=_to_stderr)
    if as_json:
        emit(report.to_dict(), True)
    else:
        click.echo(report.render())


@benchmark.command("scoring")
@click.option("--services", type=click.IntRange(1, 100_000), default=2000, show_default=True,
              help="Services of 5 metrics each scored per tick (2,000 = 10,000 series).")
@click.option("--models", type=click.IntRange(1, 100), default=4, show_default=True,
              help="Distinct fitted models, shared round-robin by the services.")
@click.option("--ticks", type=click.IntRange(1, 100), default=10, show_default=True,
              help="Ticks timed, a minute apart; the median and the slowest are printed.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def scoring(services: int, models: int, ticks: int, as_json: bool) -> None:
    """One fleet-wide tick: the ensemble and the baselines scored for every service at once,
    beside each service's own score(), with the largest difference between them.
    """
    from harness.scoringbench import run_scoring_benchmark

    report = run_scoring_benchmark(services, models, ticks, progress=_to_stderr)
    if as_json:
        emit(report.to_dict(), True)
    else:
        click.echo(report.render())


from harness.cli.backtest_bench import backtest_benchmark  # noqa: E402 - in their own modules
from harness.cli.oom import oom  # noqa: E402

benchmark.add_command(oom)
benchmark.add_command(backtest_benchmark, "backtest")
