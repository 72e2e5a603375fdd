"""Pages and reports through SNS, SES e-mail and a webhook, on the local endpoint and a local server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from rca.playbook import load_playbook
from service.aws import ClientFactory, local_aws, reset_local_aws
from service.escalation import Escalator
from service.mail import SesMailer
from service.notify import EmailNotifier, FanOutNotifier, NotifyError, SnsNotifier, WebhookNotifier
from service.store import IncidentStore

pytestmark = pytest.mark.integration
SENDER = "aiops@example.com"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with local_aws() as url:
        yield url


@pytest.fixture()
def aws(endpoint):
    reset_local_aws(endpoint)
    factory = ClientFactory()
    factory.client("ses").verify_email_identity(EmailAddress=SENDER)
    return factory


def sns_queue(factory) -> tuple[str, str]:
    """An SNS topic with an SQS queue subscribed, to read back what was published."""
    sns, sqs = factory.client("sns"), factory.client("sqs")
    topic = sns.create_topic(Name="aiops-escalations")["TopicArn"]
    queue = sqs.create_queue(QueueName="pages")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return topic, queue


def received(factory, queue: str) -> list[dict]:
    answer = factory.client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
    messages = answer.get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def sent_mail(factory) -> float:
    return factory.client("ses").get_send_quota()["SentLast24Hours"]


class Hook(BaseHTTPRequestHandler):
    bodies: list[dict] = []
    status = 200

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        Hook.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(Hook.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def hook() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Hook.bodies, Hook.status = [], 200
    yield f"http://127.0.0.1:{server.server_address[1]}/aiops"
    server.shutdown()


def test_sns_pages_carry_the_role_for_subscription_filters(aws) -> None:
    topic, queue = sns_queue(aws)
    SnsNotifier(aws.client("sns"), topic).notify("team lead", "Escalation: incident 4\non web", "details")
    [message] = received(aws, queue)
    assert message["Subject"] == "Escalation: incident 4 on web"
    assert message["MessageAttributes"]["role"]["Value"] == "team lead"


def test_email_goes_to_the_roles_recipients(aws) -> None:
    mailer = SesMailer(aws.client("ses"), SENDER)
    notifier = EmailNotifier(mailer, {"on-call engineer": ["oncall@example.com"], "*": ["sre@example.com"]})
    assert notifier.notify("on-call engineer", "Resolved: incident 1", "# report")
    assert notifier.notify("incident commander", "Escalation", "text")
    assert sent_mail(aws) == 2
    with pytest.raises(NotifyError, match="no e-mail recipients configured for role 'x'"):
        EmailNotifier(mailer, {"y": ["a@b.c"]}).notify("x", "s", "b")


def test_an_unverified_sender_is_named(aws) -> None:
    notifier = EmailNotifier(SesMailer(aws.client("ses"), "nobody@example.com"), {"*": ["a@example.com"]})
    with pytest.raises(NotifyError, match="cannot send e-mail from nobody@example.com through SES"):
        notifier.notify("on-call engineer", "s", "b")


def test_the_webhook_gets_json_and_a_refusal_is_an_error(hook) -> None:
    WebhookNotifier(hook).notify("on-call engineer", "Escalation: incident 2", "why")
    assert Hook.bodies == [{"role": "on-call engineer", "subject": "Escalation: incident 2", "body": "why"}]
    Hook.status = 500
    with pytest.raises(NotifyError, match=f"webhook {hook} failed"):
        WebhookNotifier(hook).notify("team lead", "s", "b")


def test_one_broken_channel_does_not_silence_a_page(aws, hook) -> None:
    broken = EmailNotifier(SesMailer(aws.client("ses"), "unverified@example.com"), {"*": ["a@example.com"]})
    both = FanOutNotifier([("email", broken), ("webhook", WebhookNotifier(hook))])
    receipt = both.notify("on-call engineer", "s", "b")
    assert receipt.startswith("webhook:") and "email failed" in receipt and len(Hook.bodies) == 1
    with pytest.raises(NotifyError, match="email failed"):
        FanOutNotifier([("email", broken)]).notify("on-call engineer", "s", "b")


def test_an_escalation_pages_through_sns_and_email(aws, tmp_path) -> None:
    topic, queue = sns_queue(aws)
    notifier = FanOutNotifier([
        ("sns", SnsNotifier(aws.client("sns"), topic)),
        ("email", EmailNotifier(SesMailer(aws.client("ses"), SENDER), {"*": ["oncall@example.com"]}))])
    store = IncidentStore(tmp_path / "incidents.sqlite")
    t0 = pd.Timestamp("2026-11-16 10:00", tz="UTC")
    incident = store.open_incident("prod", "web", t0)
    escalator = Escalator(store, notifier, load_playbook())
    assert escalator.escalate(incident, t0, "scale_up failed: access denied") == [0]
    assert escalator.page_due(store.get(incident), t0 + pd.Timedelta(minutes=16)) == [1]
    subjects = [m["Subject"] for m in received(aws, queue)]
    assert subjects == [f"Escalation: incident {incident} on web (prod)"] * 2
    assert sent_mail(aws) == 2
    roles = [e["data"]["role"] for e in store.events(incident) if e["kind"] == "escalation"]
    assert roles == ["on-call engineer", "team lead"]


def test_the_console_copy_does_not_count_as_a_page(aws, tmp_path) -> None:
    import io

    from service.bootstrap import build_notifier
    from service.watch_config import NotifyConfig

    stream = io.StringIO()
    notifier = build_notifier(NotifyConfig(sns_topic_arn="arn:aws:sns:us-east-1:123456789012:missing"),
                              aws, stream)
    with pytest.raises(NotifyError, match="sns failed"):
        notifier.notify("on-call engineer", "Escalation: incident 9", "why")
    assert "Escalation: incident 9" in stream.getvalue(), "still printed for whoever watches"
    alone = build_notifier(NotifyConfig(), aws, stream)
    assert alone.notify("on-call engineer", "s", "b") == "console:console"
