"""Rendering an email: text + HTML parts from the files under templates/.

Jinja2 escapes every value in the `.html` templates (autoescape), so a pack named
`<script>` arrives as text, and StrictUndefined turns a misspelt variable into an
error (the email is dead-lettered) instead of a blank in a customer's receipt.
"""

import uuid
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services.notifications.compose import Notification

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
_ENV = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


def render(notification: Notification) -> tuple[str, str]:
    """(text, html) of the notification."""
    text = _ENV.get_template(f"{notification.template}.txt").render(notification.context)
    html = _ENV.get_template(f"{notification.template}.html").render(notification.context)
    return text, html


def message_id(event_id: uuid.UUID, template: str, sender: str) -> str:
    """The same for every try of one email, so a duplicate after a crash can be told apart."""
    domain = sender.rsplit("@", 1)[-1] or "pika.example"
    return f"<{event_id}.{template}@{domain}>"


def build_message(
    notification: Notification, event_id: uuid.UUID, sender: str, recipient: str
) -> EmailMessage:
    text, html = render(notification)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = notification.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id(event_id, notification.template, sender)
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message
