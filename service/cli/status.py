"""``aiops status``: what the seed's ``describe-services`` showed, plus what aiops knows.

The service's desired and running counts, its task definition, every deployment (a rollout in
progress shows as more than one, and blocks rollbacks), the newest service events, an attached
Application Auto Scaling target, and from the incident log the open incidents (a service may
have several: another fault is split off from one a person owns) and any action in flight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from tabulate import tabulate

from service.cli.common import emit, existing_store, handle_errors, settings_from, with_target

if TYPE_CHECKING:
    from service.store import Incident


@click.command()
@with_target
@click.option("--events", "n_events", default=10, show_default=True, type=click.IntRange(0, 100),
              help="How many of the newest service events to show.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def status(ctx, cluster, service, n_events: int, as_json: bool) -> None:
    """Show an ECS service's deployments, newest events, scaler, open incident and action in flight."""
    from service.aws import ClientFactory
    from service.ecs import EcsActions

    settings = settings_from(ctx, cluster=cluster, service=service)
    target = settings.target
    factory = ClientFactory()
    actions = EcsActions(factory.client("ecs"), autoscaling_client=factory.client("application-autoscaling"))
    found = actions.status(target.cluster, target.service, events=n_events)
    incidents, flying = [], None
    store = existing_store(settings, required=False)
    if store is not None:
        incidents = store.open_incidents(target.cluster, target.service)
        history = store.history(target.cluster, target.service, settings.clock())
        flying = history.in_flight[0] if history.in_flight else None
    newest = incidents[-1] if incidents else None
    data = found.to_dict() | {"open_incident": newest.to_dict() if newest else None,
                              "open_incidents": [i.to_dict() for i in incidents],
                              "action_in_flight": flying.to_dict() if flying else None}
    if as_json:
        emit(data, True)
        return
    state = found.state
    click.echo(f"{state.service} in {state.cluster}: {state.status}, desired {state.desired_count}, "
               f"running {state.running_count}, task definition {state.task_definition_name or '-'}"
               + (" (a deployment is rolling out)" if state.rolling_out else ""))
    scaling = found.scaling
    click.echo("Application Auto Scaling: " + (f"min {scaling.min_capacity}, max {scaling.max_capacity}"
                                                if scaling else "no target attached"))
    click.echo("\nDeployments")
    click.echo(tabulate([[d.get("status"), d.get("taskDefinition", "").rsplit("/", 1)[-1],
                          d.get("desiredCount"), d.get("runningCount"), d.get("pendingCount"),
                          d.get("rolloutState", "-"), d.get("createdAt")] for d in found.deployments],
                        headers=["status", "task definition", "desired", "running", "pending",
                                 "rollout", "created"]))
    click.echo(f"\nLast {n_events} events")
    click.echo(tabulate([[e["createdAt"], e["message"]] for e in found.events],
                        headers=["at", "message"]) if found.events else "(none)")
    click.echo("\nOpen incident: " + ("; ".join(_incident_line(i) for i in incidents) or "none"))
    click.echo("Action in flight: " + (f"{flying.action} (action {flying.id}, {flying.status}, "
                                       f"{flying.origin})" if flying else "none"))


def _incident_line(incident: Incident) -> str:
    """``7 (escalated, high_cpu)``, and the incident it was split off from, if any."""
    split = f", split off from {incident.related_to}" if incident.related_to else ""
    return f"{incident.id} ({incident.status}, {incident.root_cause}{split})"
