"""E-mail through Amazon SES: escalation pages as plain text, the RCA report as a multipart message.

The report is ``multipart/alternative``: the Markdown as the text part, and the HTML report with
its plots as ``multipart/related`` (each PNG a part the HTML names by ``cid:``; mail clients
block ``data:`` images), so the plots arrive inline in every client.

IAM: ses:SendEmail (pages) and ses:SendRawEmail (reports) on the sender's verified identity.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

MAX_SUBJECT = 998  # RFC 5322 line length; SES refuses longer subjects


class MailError(RuntimeError):
    """An e-mail could not be sent; the message names the sender and SES's reason."""


class SesMailer:
    """Sends e-mail from one verified SES identity.

    Parameters
    ----------
    ses_client : a boto3 SES client (``ClientFactory().client("ses")``).
    sender : the verified address mail is sent from.
    """

    def __init__(self, ses_client: Any, sender: str):
        self.ses = ses_client
        self.sender = sender

    def send(self, recipients: list[str], subject: str, text: str, html: str | None = None) -> str:
        """Send one message to ``recipients``; return SES's message id."""
        if not recipients:
            raise MailError("no recipients to send the e-mail to")
        body: dict = {"Text": {"Data": text, "Charset": "UTF-8"}}
        if html is not None:
            body["Html"] = {"Data": html, "Charset": "UTF-8"}
        try:
            reply = self.ses.send_email(
                Source=self.sender, Destination={"ToAddresses": list(recipients)},
                Message={"Subject": {"Data": " ".join(subject.split())[:MAX_SUBJECT],
                                     "Charset": "UTF-8"}, "Body": body})
        except (ClientError, BotoCoreError) as exc:
            raise MailError(f"cannot send e-mail from {self.sender} through SES: {exc}") from None
        return reply["MessageId"]

    def send_report(self, recipients: list[str], subject: str, text: str,
                    html: str, images: dict[str, bytes]) -> str:
        """Send the report as one MIME message (text, HTML, inline PNGs); SES's message id.

        ``html`` names each image as ``cid:<key>`` for its key in ``images``.
        """
        if not recipients:
            raise MailError("no recipients to send the e-mail to")
        message = report_message(self.sender, recipients, subject, text, html, images)
        try:
            reply = self.ses.send_raw_email(Source=self.sender, Destinations=list(recipients),
                                            RawMessage={"Data": message.as_bytes()})
        except (ClientError, BotoCoreError) as exc:
            raise MailError(f"cannot send e-mail from {self.sender} through SES: {exc}") from None
        return reply["MessageId"]


def content_id(name: str) -> str:
    """A Content-ID for an inline image (what the HTML's ``cid:`` names)."""
    return f"plot-{re.sub(r'[^A-Za-z0-9_.-]', '-', name)}@aiops"


def report_message(sender: str, recipients: list[str], subject: str, text: str, html: str,
                   images: dict[str, bytes]) -> EmailMessage:
    """The report as ``multipart/alternative``: ``text/plain`` (the Markdown), then the HTML as
    ``multipart/related`` with each image a ``image/png`` part under its Content-ID."""
    message = EmailMessage()
    message["Subject"] = " ".join(subject.split())[:MAX_SUBJECT]
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "aiops")
    message.set_content(text, subtype="plain", charset="utf-8")
    message.add_alternative(html, subtype="html", charset="utf-8")
    html_part = message.get_payload()[-1]
    for key, png in images.items():
        html_part.add_related(png, maintype="image", subtype="png", cid=f"<{key}>",
                              filename=f"{key.split('@')[0]}.png", disposition="inline")
    return message
