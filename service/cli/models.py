"""``aiops models``: the model versions in a store, and champion against challenger.

``list`` shows every version of a service's model (or of every model) with its aliases and
figures; ``compare`` puts the champion's and the challenger's figures side by side, from the
evaluation they last met on together when there is one.
"""

from __future__ import annotations

import math
import os

import click

from service.cli.common import emit, handle_errors, settings_from, with_target
from service.cli.train import MLFLOW_ENV, store_paths
from service.signing import bundle_trust

FIGURES = ("events", "found", "recall", "precision", "f1", "false_alarms_per_day", "mean_delay_min")


def store_options(func):
    func = click.option("--mlflow-uri", default=None,
                        help=f"MLflow tracking URI for --store mlflow [env {MLFLOW_ENV}; "
                             "sqlite:///mlflow.db].")(func)
    return click.option("--store", "store_kind", type=click.Choice(["local", "mlflow"]), default="local",
                        show_default=True, help="The local store under the data dir, or the MLflow "
                                                "registry.")(func)


def open_store(settings, store_kind: str, mlflow_uri: str | None):
    if store_kind == "mlflow":
        from models.mlflow_store import MlflowModelStore
        from training.tracking import DEFAULT_URI

        return MlflowModelStore(mlflow_uri or os.environ.get(MLFLOW_ENV) or DEFAULT_URI,
                                bundle_trust(settings, "aiops models"))
    from models.store import LocalModelStore

    return LocalModelStore(store_paths(settings)[0], bundle_trust(settings, "aiops models"))


def _names(store, settings, explicit: bool) -> list[str]:
    from models.store import model_name

    if explicit:
        return [model_name(settings.target.cluster, settings.target.service)]
    if store.kind == "local":
        return store.names()
    return sorted(m.name for m in store.client.search_registered_models())


COUNTS = ("events", "found")


def _fmt(value, figure: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.0f}" if figure in COUNTS else f"{value:.3f}"
    return str(value)


@click.group()
def models() -> None:
    """Model versions, aliases and their figures (local store or MLflow registry)."""


@models.command("list")
@with_target
@store_options
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def list_models(ctx, cluster, service, store_kind, mlflow_uri, as_json) -> None:
    """Every version of the service's model (every model without --cluster/--service)."""
    settings = settings_from(ctx, cluster=cluster, service=service)
    store = open_store(settings, store_kind, mlflow_uri)
    versions = [v for name in _names(store, settings, bool(cluster or service))
                for v in store.versions(name)]
    if not versions:
        raise OSError(f"no model versions in the {store_kind} store"
                      + (f" at {store.root}" if store_kind == "local" else f" at {store.tracking_uri}"))
    rows = []
    for v in versions:
        evaluation = v.info.get("evaluation", {})
        window = v.info.get("data_window") or ["", ""]
        rows.append([v.name, v.version, ",".join(v.aliases) or "-", v.created_at or "-",
                     f"{window[0][:16]} .. {window[1][:16]}" if window[0] else "-",
                     _fmt(evaluation.get("f1")), _fmt(evaluation.get("false_alarms_per_day")),
                     v.info.get("decision", "-"), v.digest[:12]])
    emit([v.to_dict() for v in versions], as_json, rows,
         ["model", "version", "aliases", "created", "data window", "F1", "false alarms/day",
          "decision", "digest"])


@models.command("compare")
@with_target
@store_options
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def compare_models(ctx, cluster, service, store_kind, mlflow_uri, as_json) -> None:
    """The champion's and the challenger's figures side by side.

    When the challenger was evaluated against this champion (the usual case), both columns are
    from that one evaluation: the same tail and the same injected anomalies. Otherwise each
    column is the version's own evaluation, and the output says so.
    """
    from models.store import CHALLENGER, CHAMPION, model_name

    settings = settings_from(ctx, cluster=cluster, service=service)
    store = open_store(settings, store_kind, mlflow_uri)
    name = model_name(settings.target.cluster, settings.target.service)
    champion = store.get(name, alias=CHAMPION)
    challenger = store.get(name, alias=CHALLENGER)
    if champion is None:
        raise OSError(f"model {name} has no champion in the {store_kind} store; train one with aiops train")
    head_to_head = (challenger is not None
                    and (challenger.info.get("champion") or {}).get("version") == champion.version)
    if challenger is None:
        columns = {f"champion v{champion.version}": champion.info.get("evaluation", {})}
        basis = "no challenger: the champion's own evaluation"
    elif head_to_head:
        columns = {f"champion v{champion.version}": challenger.info["champion"].get("evaluation", {}),
                   f"challenger v{challenger.version}": challenger.info.get("evaluation", {})}
        basis = f"the same evaluation (v{challenger.version}'s held-back tail with injected anomalies)"
    else:
        columns = {f"champion v{champion.version}": champion.info.get("evaluation", {}),
                   f"challenger v{challenger.version}": challenger.info.get("evaluation", {})}
        basis = "each version's own evaluation (different tails: compare with care)"
    rows = [[figure, *(_fmt(c.get(figure), figure) for c in columns.values())] for figure in FIGURES]
    rows.append(["data window", *(
        " .. ".join(s[:16] for s in (v.info.get("data_window") or ["-", "-"]))
        for v in (champion, challenger) if v is not None)])
    if as_json:
        emit({"model": name, "basis": basis, "columns": columns,
              "champion": champion.to_dict(), "challenger": challenger.to_dict() if challenger else None},
             True)
        return
    click.echo(f"{name} ({store_kind} store); figures from {basis}")
    emit(None, False, rows, ["figure", *columns])
    if challenger is not None and challenger.info.get("reason"):
        click.echo(f"v{challenger.version} stayed challenger: {challenger.info['reason']}")


@models.command("promote")
@with_target
@click.argument("version", type=click.IntRange(1, None))
@store_options
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def promote_model(ctx, cluster, service, version, store_kind, mlflow_uri, as_json) -> None:
    """Make VERSION the champion by hand (e.g. back to the previous one after a bad night).

    The version is loaded and verified first; with the local store its bundle also becomes the
    service's deployed bundle, which aiops watch loads.
    """
    from models.store import CHAMPION, model_name

    settings = settings_from(ctx, cluster=cluster, service=service)
    store = open_store(settings, store_kind, mlflow_uri)
    name = model_name(settings.target.cluster, settings.target.service)
    store.load(name, version=version)  # refuses a missing, tampered or incompatible version
    store.set_alias(name, CHAMPION, version)
    deployed = None
    if store_kind == "local":
        deployed = store.export(name, version, store_paths(settings)[1] / name)
    out = {"model": name, "store": store_kind, "champion": version,
           "deployed": str(deployed) if deployed else None}
    emit(out, as_json, [[k, v] for k, v in out.items()])
