"""``aiops watch``: score services' newest points every period and act on their incidents.

One service from ``--cluster/--service`` (or the settings), or several from ``--config FILE``
(see ``service/watch_config.py``). SIGTERM or Ctrl-C stops it after the tick in progress; a
watcher started again on the same data directory resumes pending verifications and escalations.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click
import pandas as pd

from service.cli.common import allow_unsigned_option, handle_errors, settings_from, with_target
from service.settings import Mode

if TYPE_CHECKING:
    from service.watcher import IncidentStep


def config_option(func):
    return click.option("--config", "config_path", envvar="AIOPS_CONFIG",
                        type=click.Path(path_type=Path, dir_okay=False),
                        help="Watch config: services, guardrails, notifiers [env AIOPS_CONFIG].")(func)


@click.command()
@with_target
@config_option
@click.option("--bundle", type=click.Path(path_type=Path), default=None,
              help="Model bundle directory, for a single service [its champion under the data dir].")
@click.option("--once", is_flag=True, help="Score the newest points once and exit.")
@click.option("--mode", type=click.Choice([m.value for m in Mode]), default=None,
              help="auto, approve (CRITICAL actions wait) or dry-run [env AIOPS_MODE; config; auto].")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per service and tick.")
@click.option("-v", "--verbose", is_flag=True, help="Log retries and lifecycle steps to stderr.")
@allow_unsigned_option
@click.pass_context
@handle_errors
def watch(ctx, cluster, service, config_path, bundle, once, mode, as_json, verbose,
          allow_unsigned) -> None:
    """Watch services: every period score the newest points and act on incidents."""
    from models.bundle import load_bundle
    from service.aws import ClientFactory
    from service.fleet import build_fleet, default_bundle, exclusive, stop_on_signals
    from service.signing import bundle_trust
    from service.watch_config import ServiceConfig, load_watch_config

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from(ctx, cluster=cluster, service=service, mode=mode,
                             allow_unsigned=allow_unsigned)
    config = load_watch_config(config_path)
    if cluster or service or bundle:  # the command line names one service: watch only that one
        config = config.model_copy(update={"services": [ServiceConfig(
            cluster=settings.target.cluster, service=settings.target.service,
            load_balancer=settings.target.load_balancer, target_group=settings.target.target_group,
            bundle=bundle)]})

    factory = ClientFactory()
    trust = bundle_trust(settings, "aiops watch", factory=factory)

    def load_detector(svc, svc_settings):
        return load_bundle(default_bundle(svc_settings, svc), trust=trust).model

    wall = settings.clock
    clock = lambda: wall().floor("min") - pd.Timedelta(minutes=1)  # noqa: E731
    stop = threading.Event()
    with exclusive(settings.data_dir):
        fleet = build_fleet(settings, config, factory, load_detector, clock)
        names = ", ".join(w.name for w in fleet.watchers)
        mode_used = fleet.watchers[0].remediator.mode.value
        click.echo(f"watching {names} every {settings.period_seconds} s in {mode_used} mode "
                   f"(incident log {settings.db_path}); Ctrl-C or SIGTERM stops", err=True)
        with stop_on_signals(stop):
            ticks = fleet.run(stop, settings.period_seconds, lambda rows: _show(rows, as_json), once=once)
    click.echo(f"stopped after {ticks} tick(s); {json.dumps(fleet.retry_log.summary())}", err=True)


def _show(rows, as_json: bool) -> None:
    for row in rows:
        result = row.result
        if as_json:
            data = {"service": row.service, "error": row.error}
            if result is not None:
                data.update(at=result.at.isoformat(), anomalies=len(result.anomalies),
                            opened=result.opened, incident=result.incident, status=result.status,
                            verified=result.verified, passed=result.passed,
                            outcome=result.outcome.to_dict() if result.outcome else None,
                            read_error=result.read_error, joined=result.joined,
                            incidents=[_step_dict(s) for s in result.steps])
            click.echo(json.dumps(data, default=str))
            continue
        if result is None:
            click.echo(f"{row.service}: tick failed: {row.error}")
            continue
        parts = [f"{result.at:%Y-%m-%d %H:%M} {row.service}: {len(result.anomalies)} anomalies"]
        if result.read_error:
            parts.append(f"metrics unreadable ({result.read_error})")
        if result.opened:
            parts.append(f"opened incident {result.opened}")
        if result.outcome is not None:
            parts.append(f"{result.outcome.action}: {result.outcome.status} ({result.outcome.change})")
        if result.verified:
            parts.append(f"verified incident {result.verified}: "
                         f"{'passed' if result.passed else 'failed, escalated'}")
        elif result.incident and not result.opened:
            parts.append(f"incident {result.incident} {result.status}")
        parts += [_step_text(s) for s in result.steps
                  if s.incident != result.incident and (s.outcome is not None or s.verified)]
        click.echo("; ".join(parts))


def _step_dict(step: IncidentStep) -> dict:
    """One open incident's part of a tick, as JSON."""
    return {"incident": step.incident, "status": step.status, "verified": step.verified,
            "passed": step.passed, "outcome": step.outcome.to_dict() if step.outcome else None}


def _step_text(step: IncidentStep) -> str:
    """What a tick did to another open incident of the service (it may have several)."""
    if step.verified:
        return f"verified incident {step.incident}: {'passed' if step.passed else 'failed, escalated'}"
    return f"incident {step.incident}: {step.outcome.action} {step.outcome.status} ({step.outcome.change})"
