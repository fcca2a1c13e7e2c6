"""Sending over SMTP (aiosmtplib), and telling a retryable failure from a final one.

Only the recipient's server saying no for good (5xx to RCPT or DATA) is final:
retrying cannot help, so that email is dead-lettered at once. Everything else
(connection refused, timeouts, 4xx, a wrong password) may heal and is retried.
"""

from email.message import EmailMessage

import aiosmtplib

from services.settings import Settings


async def send(settings: Settings, message: EmailMessage) -> None:
    await aiosmtplib.send(
        message,
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_user or None,
        password=settings.smtp_password or None,
        start_tls=settings.smtp_starttls,
        timeout=settings.smtp_timeout,
    )


def is_permanent(error: BaseException) -> bool:
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return all(r.code >= 500 for r in error.recipients)
    if isinstance(error, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        return error.code >= 500
    return False


def describe(error: BaseException) -> str:
    """A short reason for logs, the table and the DLQ, without the recipient's address."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = ", ".join(f"{r.code} {r.message}" for r in error.recipients)
        return f"recipient refused: {codes}"[:500]
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return f"{type(error).__name__}: {error.code} {error.message}"[:500]
    first = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {first}"[:500]
