"""``aiops serve``: the HTTP API (score, rca, remediate, incidents, health, metrics) under uvicorn.

The app is :func:`service.api.create_app`; every service's champion model is loaded once here,
before the first request. Mutating endpoints need a bearer token from ``AIOPS_API_TOKENS``; the
command refuses to start without one unless ``--insecure-no-auth`` says so explicitly.
"""

from __future__ import annotations

import gc
import ipaddress
import logging

import click

from service.cli.common import allow_unsigned_option, fail, handle_errors, settings_from
from service.cli.watch import config_option


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@config_option
@click.option("--insecure-no-auth", is_flag=True,
              help="Start without API tokens: anyone who reaches the port may remediate. Local use only.")
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="One log line per request on stderr.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
@allow_unsigned_option
@click.pass_context
@handle_errors
def serve(ctx, host: str, port: int, config_path, insecure_no_auth: bool, access_log: bool,
          log_level: str, allow_unsigned: bool | None) -> None:
    """Serve the HTTP API (OpenAPI at /docs) until Ctrl-C or SIGTERM."""
    import uvicorn

    from service.api import create_app

    settings = settings_from(ctx, allow_unsigned=allow_unsigned)
    if not settings.api_tokens and not insecure_no_auth:
        fail("refusing to start: POST /v1/remediate and the incident actions would be open to anyone; "
             "set AIOPS_API_TOKENS (e.g. `export AIOPS_API_TOKENS=$(openssl rand -hex 32)`) or pass "
             "--insecure-no-auth")
    if insecure_no_auth and settings.api_tokens:
        click.echo("aiops serve: --insecure-no-auth ignored: API tokens are configured", err=True)
    if insecure_no_auth and not settings.api_tokens and not _loopback(host):
        click.echo(f"aiops serve: WARNING: no auth on {host}, which is not a loopback address", err=True)
    logging.basicConfig(level=getattr(logging, log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings, insecure_no_auth=insecure_no_auth,
                     config_path=str(config_path) if config_path else None)
    models = app.state.context.models
    click.echo(f"aiops serve: http://{host}:{port} (docs /docs); {len(models.models)} model(s) loaded "
               f"from {models.where}" + (f", {len(models.problems)} refused" if models.problems else "")
               + f"; {settings.mode.value} mode; mutating endpoints "
               + ("need a bearer token" if settings.api_tokens else "OPEN (--insecure-no-auth)"),
               err=True)
    models.warm()   # stacked before the first request, and frozen with the rest below
    # Everything loaded so far (models, pandas, scikit-learn: ~200,000 objects) lives as long as
    # the process; a full garbage collection walking it took 100-260 ms on the 2-core machine and
    # landed on whichever request triggered it. Frozen, the collector walks only what requests make.
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log)
