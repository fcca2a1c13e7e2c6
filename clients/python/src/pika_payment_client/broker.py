"""How the client reaches Kafka: the caller's cluster, login and TLS.

A platform service already has its Kafka settings; it hands them over here once and
both the publisher (`Payments`) and the consumer (`PaymentEvents`) use them. The
settings are checked when they are built, so a SASL login without a password fails at
start-up, not on the first booking.
"""

import ssl
from dataclasses import dataclass, field
from typing import Any, Literal

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
_TLS = ("SSL", "SASL_SSL")
_SASL = ("SASL_PLAINTEXT", "SASL_SSL")


@dataclass(frozen=True)
class BrokerSettings:
    """Kafka cluster, login and topic names.

    `topic_prefix` is prepended to the service's topic names (`payment.commands`,
    `payment.events`) when the payment service runs with one (`TOPIC_PREFIX`).
    For the TLS protocols the brokers are verified with `ssl_context`, or with the
    system's certificate authorities when none is given.
    """

    bootstrap_servers: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    client_id: str = "pika-payment-client"
    topic_prefix: str = ""

    def __post_init__(self) -> None:
        if not self.bootstrap_servers:
            raise ValueError("bootstrap_servers is empty")
        if self.security_protocol in _SASL:
            if not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
                raise ValueError(
                    f"{self.security_protocol} needs sasl_mechanism, sasl_username and sasl_password"
                )
        elif self.sasl_mechanism or self.sasl_username or self.sasl_password:
            raise ValueError(f"{self.security_protocol} does not log in: leave the sasl_* settings out")
        if self.ssl_context is not None and self.security_protocol not in _TLS:
            raise ValueError(f"{self.security_protocol} does not use TLS: leave ssl_context out")

    @property
    def commands_topic(self) -> str:
        """Where platform services publish (the public zone)."""
        return f"{self.topic_prefix}payment.commands"

    @property
    def events_topic(self) -> str:
        return f"{self.topic_prefix}payment.events"

    def aiokafka_options(self) -> dict[str, Any]:
        """Keyword arguments every aiokafka producer and consumer of the client starts from."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in _TLS:
            options["ssl_context"] = self.ssl_context or ssl.create_default_context()
        if self.security_protocol in _SASL:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password
        return options
