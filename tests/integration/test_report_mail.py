"""The RCA report arrives by e-mail as one multipart message through SES (the local endpoint): the
Markdown as the text part, the HTML report with its plots inline (``cid:`` parts, not data URIs)."""

from __future__ import annotations

import email
import email.policy
import io
import json
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from detection.zscore import RobustZDetector
from service.aws import ClientFactory, local_aws
from service.mail import SesMailer
from service.notify import ConsoleNotifier, EmailNotifier, FanOutNotifier
from service.reporting import send_report
from service.settings import ServiceTarget, Settings
from service.store import IncidentStore
from tests.fakes import Clock, FakeSource, fake_platform, normal

pytestmark = pytest.mark.integration

SENDER = "aiops@example.com"
T0 = pd.Timestamp("2026-11-02 10:00", tz="UTC")


class RecordingSes:
    """The real SES client (moto), with a copy of every raw message it was asked to send."""

    def __init__(self, client):
        self.client, self.raw, self.ids = client, [], []

    def send_raw_email(self, **kwargs):
        self.raw.append(kwargs["RawMessage"]["Data"])
        reply = self.client.send_raw_email(**kwargs)
        self.ids.append(reply["MessageId"])
        return reply

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.fixture(scope="module")
def ses() -> Iterator[ClientFactory]:
    with local_aws():
        factory = ClientFactory()
        factory.client("ses").verify_email_identity(EmailAddress=SENDER)
        yield factory


def resolve(tmp_path, notifier) -> tuple[IncidentStore, int]:
    """An incident the watcher detects, fixes, verifies and reports through ``notifier``."""
    history = pd.date_range(T0 - pd.Timedelta(days=14), T0, freq="1min", inclusive="left")
    detector = RobustZDetector().fit(normal(history, np.random.default_rng(0)))
    clock, store = Clock(T0), IncidentStore(tmp_path / "log.sqlite")
    platform = fake_platform(Settings(data_dir=tmp_path), clock=clock, store=store, notifier=notifier)
    fault = (T0 + pd.Timedelta(minutes=3), T0 + pd.Timedelta(minutes=10), "high_cpu")
    watcher = platform.watcher(ServiceTarget(), detector, source=FakeSource([fault]))
    for _ in range(30):
        watcher.tick()
        clock.advance()
    [incident] = store.list()
    assert incident.status == "resolved"
    return store, incident.id


def test_the_report_is_one_multipart_message_with_its_plots_inline(ses, tmp_path) -> None:
    recording = RecordingSes(ses.client("ses"))
    mailer = EmailNotifier(SesMailer(recording, SENDER), {"*": ["oncall@example.com"]})
    store, incident_id = resolve(tmp_path, FanOutNotifier([("email", mailer)]))
    [sent] = [e for e in store.events(incident_id) if e["kind"] == "report_sent"]
    assert sent["data"]["message_id"] == f"email:{recording.ids[0]}", "SES accepted it"

    [raw] = recording.raw
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message.get_content_type() == "multipart/alternative"
    text, related = message.get_payload()
    assert text.get_content_type() == "text/plain"
    assert text.get_content().startswith(f"# Incident {incident_id}: high_cpu")
    assert related.get_content_type() == "multipart/related"
    html, *images = related.get_payload()
    body = html.get_content()
    assert "data:image" not in body, "mail clients block data URIs"
    assert images and all(i.get_content_type() == "image/png" for i in images)
    for image in images:
        cid = image["Content-ID"].strip("<>")
        assert f'src="cid:{cid}"' in body
        assert image.get_content().startswith(b"\x89PNG")
    assert {i["Content-ID"].strip("<>").split("@")[0] for i in images} >= {"plot-cpu_utilization"}
    assert send_report(store, FanOutNotifier([("email", mailer)]), incident_id, "on-call engineer",
                       tmp_path / "reports", T0) is None, "sent once"
    assert len(recording.raw) == 1


def test_a_channel_without_mail_gets_the_markdown(tmp_path) -> None:
    stream = io.StringIO()
    resolve(tmp_path, FanOutNotifier([("console", ConsoleNotifier(stream))]))
    reports = [json.loads(line) for line in stream.getvalue().splitlines() if "RCA report" in line]
    assert len(reports) == 1 and reports[0]["body"].startswith("# Incident")
    assert "cid:" not in reports[0]["body"] and "<html" not in reports[0]["body"]
