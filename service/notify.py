"""Notifiers: who is told, through what. The escalation path itself is playbook data."""

from __future__ import annotations

import json
from typing import Protocol

from botocore.exceptions import BotoCoreError, ClientError


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
            reply = self.sns.publish(TopicArn=self.topic_arn, Subject=subject[:100], Message=body,
                                     MessageAttributes={"role": {"DataType": "String",
                                                                 "StringValue": role}})
        except (ClientError, BotoCoreError) as exc:
            raise NotifyError(f"cannot publish to SNS topic {self.topic_arn}: {exc}") from None
        return reply["MessageId"]


class ConsoleNotifier:
    """Writes notifications as JSON lines to a stream (a terminal, a log collector)."""

    def __init__(self, stream):
        self.stream = stream

    def notify(self, role: str, subject: str, body: str) -> str:
        self.stream.write(json.dumps({"role": role, "subject": subject, "body": body}) + "\n")
        return "console"
