"""Notifiers: who is told, through what. The escalation path itself is playbook data.

Every notifier has one method, ``notify(role, subject, body) -> message id``, and raises
:class:`NotifyError` naming the channel when it cannot deliver. :class:`FanOutNotifier` sends
through several channels at once and succeeds when any of them did, so one broken channel does
not silence a page.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from service.mail import MailError, SesMailer

WEBHOOK_TIMEOUT = 10.0


class NotifyError(RuntimeError):
    """A notification could not be sent; the message names the channel and the reason."""


class Notifier(Protocol):
    def notify(self, role: str, subject: str, body: str) -> str:
        """Send a message to ``role``; return the channel's message id."""


class SnsNotifier:
    """Publishes escalations to an SNS topic, the role as a message attribute for filtering.

    IAM: sns:Publish on the topic.
    """

    def __init__(self, sns_client, topic_arn: str):
        self.sns = sns_client
        self.topic_arn = topic_arn

    def notify(self, role: str, subject: str, body: str) -> str:
        try:
            reply = self.sns.publish(TopicArn=self.topic_arn, Subject=_sns_subject(subject),
                                     Message=body, MessageAttributes={
                                         "role": {"DataType": "String", "StringValue": role}})
        except (ClientError, BotoCoreError) as exc:
            raise NotifyError(f"cannot publish to SNS topic {self.topic_arn}: {exc}") from None
        return reply["MessageId"]


class RoleTopicsNotifier:
    """Publishes each escalation to its role's own SNS topic (the stack in ``deploy/`` makes one
    per role of the playbook's escalation chain, each with that role's subscriptions); ``"*"``
    names the topic of roles without one.

    IAM: sns:Publish on each topic.
    """

    def __init__(self, sns_client, topics: dict[str, str]):
        self.topics = {role: SnsNotifier(sns_client, arn) for role, arn in topics.items()}

    def notify(self, role: str, subject: str, body: str) -> str:
        channel = self.topics.get(role) or self.topics.get("*")
        if channel is None:
            raise NotifyError(f"no SNS topic configured for role {role!r} "
                              f"(configured: {', '.join(sorted(self.topics))})")
        return channel.notify(role, subject, body)


def _sns_subject(subject: str) -> str:
    """SNS subjects: at most 100 printable characters on one line."""
    return " ".join(subject.split())[:100] or "aiops"


class EmailNotifier:
    """E-mails each role's recipients through SES (the role -> addresses map is configuration).

    IAM: ses:SendEmail.
    """

    def __init__(self, mailer: SesMailer, recipients: dict[str, list[str]]):
        self.mailer = mailer
        self.recipients = recipients

    def notify(self, role: str, subject: str, body: str) -> str:
        try:
            return self.mailer.send(self._to(role), subject, body)
        except MailError as exc:
            raise NotifyError(str(exc)) from None

    def report(self, role: str, subject: str, text: str, html: str, images: dict[str, bytes]) -> str:
        """The RCA report as one multipart message: the Markdown, the HTML, its plots inline."""
        try:
            return self.mailer.send_report(self._to(role), subject, text, html, images)
        except MailError as exc:
            raise NotifyError(str(exc)) from None

    def _to(self, role: str) -> list[str]:
        to = self.recipients.get(role) or self.recipients.get("*")
        if not to:
            raise NotifyError(f"no e-mail recipients configured for role {role!r}")
        return to


class WebhookNotifier:
    """POSTs ``{"role", "subject", "body"}`` as JSON to a URL (Slack relays, PagerDuty, Teams...).

    Any non-2xx answer or a network error is a NotifyError; the watcher logs it and tries the
    page again on its next tick.
    """

    def __init__(self, url: str, client: httpx.Client | None = None,
                 headers: dict[str, str] | None = None, timeout: float = WEBHOOK_TIMEOUT):
        self.url = url
        self.client = client or httpx.Client(timeout=timeout)
        self.headers = headers or {}

    def notify(self, role: str, subject: str, body: str) -> str:
        try:
            reply = self.client.post(self.url, json={"role": role, "subject": subject, "body": body},
                                     headers=self.headers)
            reply.raise_for_status()
        except httpx.HTTPError as exc:
            raise NotifyError(f"webhook {self.url} failed: {exc}") from None
        return reply.headers.get("x-request-id") or f"webhook:{reply.status_code}"


class ConsoleNotifier:
    """Writes notifications as JSON lines to a stream (a terminal, a log collector)."""

    def __init__(self, stream):
        self.stream = stream

    def notify(self, role: str, subject: str, body: str) -> str:
        self.stream.write(json.dumps({"role": role, "subject": subject, "body": body}) + "\n")
        return "console"


class FanOutNotifier:
    """Sends through every channel; succeeds when at least one delivered.

    ``copies`` get every message too but do not count as delivery (the console beside SNS: a
    line in a terminal is not a page, so an SNS outage still fails the page and it is retried).
    The returned id lists each channel's id (or its error), so the incident log shows which
    channels carried the page.
    """

    def __init__(self, channels: Sequence[tuple[str, Any]], copies: Sequence[tuple[str, Any]] = ()):
        if not channels:
            raise ValueError("FanOutNotifier needs at least one channel")
        self.channels = list(channels)
        self.copies = list(copies)

    def notify(self, role: str, subject: str, body: str) -> str:
        return self._each(lambda channel: channel.notify(role, subject, body))

    def report(self, role: str, subject: str, text: str, html: str, images: dict[str, bytes]) -> str:
        """A report: the channels that carry one (e-mail) get the HTML with its plots, the others
        the Markdown text."""
        return self._each(lambda channel: channel.report(role, subject, text, html, images)
                          if hasattr(channel, "report") else channel.notify(role, subject, text))

    def _each(self, send) -> str:
        for _, copy in self.copies:
            try:
                send(copy)
            except NotifyError:
                pass  # a copy is best effort
        sent, failed = [], []
        for name, channel in self.channels:
            try:
                sent.append(f"{name}:{send(channel)}")
            except NotifyError as exc:
                failed.append(f"{name} failed: {exc}")
        if not sent:
            raise NotifyError("; ".join(failed))
        return "; ".join(sent + failed)
