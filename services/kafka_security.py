"""How every Kafka client of the service authenticates, decided in one place.

The settings `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*` and `KAFKA_SSL_*` become either a
FastStream security object (the ledger and notify workers' `KafkaBroker`) or the
keyword arguments of a plain aiokafka client (ingress producer and live consumer,
relay, CLI jobs, topic admin). Both come from the same mapping, so no process can be
left talking PLAINTEXT to a broker the others reach with SCRAM: the ACLs of the
cluster are keyed by the SASL user, and a client that silently skipped the login
would be refused, or worse, land on a listener without authorization.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Protocol

from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from services.errors import ConfigurationInvalid


class KafkaClientSettings(Protocol):
    """The settings a Kafka client's login is made from (services.settings.Settings has
    them). Named here as a protocol so this module needs nothing of the settings module,
    which calls `check_kafka_security` while it validates itself."""

    @property
    def kafka_bootstrap_servers(self) -> str: ...
    @property
    def kafka_security_protocol(self) -> str: ...
    @property
    def kafka_sasl_mechanism(self) -> str: ...
    @property
    def kafka_sasl_username(self) -> str | None: ...
    @property
    def kafka_sasl_password(self) -> str | None: ...
    @property
    def kafka_ssl_cafile(self) -> str | None: ...
    @property
    def kafka_ssl_certfile(self) -> str | None: ...
    @property
    def kafka_ssl_keyfile(self) -> str | None: ...


SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_SECURITY_CLASSES: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
    "SCRAM-SHA-512": SASLScram512,
    "SCRAM-SHA-256": SASLScram256,
    "PLAIN": SASLPlaintext,
}


def check_kafka_security(settings: KafkaClientSettings) -> None:
    """Refuse settings that would connect differently from what the operator meant.

    Credentials or certificate paths given with a protocol that does not use them are
    refused too: an operator who set a password believes the client logs in.
    """
    protocol = settings.kafka_security_protocol
    uses_sasl = protocol in SASL_PROTOCOLS
    has_login = settings.kafka_sasl_username or settings.kafka_sasl_password
    if uses_sasl and not (settings.kafka_sasl_username and _password(settings)):
        raise ConfigurationInvalid(
            f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and "
            "KAFKA_SASL_PASSWORD",
            setting="KAFKA_SASL_USERNAME",
        )
    if has_login and not uses_sasl:
        raise ConfigurationInvalid(
            f"KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL="
            f"{protocol} does not log in; use SASL_PLAINTEXT or SASL_SSL",
            setting="KAFKA_SECURITY_PROTOCOL",
        )
    files = _tls_files(settings)
    if files and protocol not in TLS_PROTOCOLS:
        raise ConfigurationInvalid(
            f"{', '.join(files)} set but KAFKA_SECURITY_PROTOCOL={protocol} uses no TLS; "
            "use SSL or SASL_SSL",
            setting="KAFKA_SECURITY_PROTOCOL",
        )
    for variable, path in files.items():
        if not Path(path).is_file():
            raise ConfigurationInvalid(f"{variable}={path} is not a file", setting=variable)
    if settings.kafka_ssl_keyfile and not settings.kafka_ssl_certfile:
        raise ConfigurationInvalid(
            "KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE (the certificate of that key)",
            setting="KAFKA_SSL_CERTFILE",
        )
    try:  # a file that is there but holds no usable PEM fails now, not at connect time
        kafka_ssl_context(settings)
    except (ssl.SSLError, OSError) as error:
        raise ConfigurationInvalid(
            f"KAFKA_SSL_* files do not make a TLS context: {error}",
            setting=next(iter(files), "KAFKA_SSL_CAFILE"),
        ) from error


def kafka_ssl_context(settings: KafkaClientSettings) -> ssl.SSLContext | None:
    """TLS context of the TLS protocols: verifies the brokers (system CAs, or
    KAFKA_SSL_CAFILE) and presents the client certificate when one is given."""
    if settings.kafka_security_protocol not in TLS_PROTOCOLS:
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
    return context


def broker_security(settings: KafkaClientSettings) -> BaseSecurity | None:
    """The `security=` of a FastStream `KafkaBroker`; None is PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    context = kafka_ssl_context(settings)
    if protocol in SASL_PROTOCOLS:
        security_class = SASL_SECURITY_CLASSES[settings.kafka_sasl_mechanism]
        return security_class(
            username=settings.kafka_sasl_username or "",
            password=_password(settings),
            ssl_context=context,
            use_ssl=protocol == "SASL_SSL",
        )
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    return None


def client_security_options(settings: KafkaClientSettings) -> dict[str, Any]:
    """Security keyword arguments of AIOKafkaProducer, -Consumer and -AdminClient."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in TLS_PROTOCOLS:
        options["ssl_context"] = kafka_ssl_context(settings)
    if protocol in SASL_PROTOCOLS:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = _password(settings)
    return options


def kafka_client_options(settings: KafkaClientSettings) -> dict[str, Any]:
    """Bootstrap list plus security: what every plain aiokafka client starts from."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        **client_security_options(settings),
    }


def kafka_broker(settings: KafkaClientSettings, **options: Any) -> KafkaBroker:
    """A FastStream broker on the configured cluster, logged in as the configured user."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers, security=broker_security(settings), **options
    )


def _password(settings: KafkaClientSettings) -> str:
    return settings.kafka_sasl_password or ""


def _tls_files(settings: KafkaClientSettings) -> dict[str, str]:
    given = {
        "KAFKA_SSL_CAFILE": settings.kafka_ssl_cafile,
        "KAFKA_SSL_CERTFILE": settings.kafka_ssl_certfile,
        "KAFKA_SSL_KEYFILE": settings.kafka_ssl_keyfile,
    }
    return {variable: path for variable, path in given.items() if path}
