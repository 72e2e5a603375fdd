"""E-mail through Amazon SES: the RCA report and escalation pages as plain text (and HTML).

IAM: ses:SendEmail on the sender's verified identity.
"""

from __future__ import annotations

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
