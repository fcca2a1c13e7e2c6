"""Settings of every pika-payment process, read once from the environment.

One class for all processes: ingress, workers and CLI share the same names, so an
operator sets a variable once (ConfigMap) and every process agrees on it.
"""

import ipaddress
from functools import lru_cache
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Asymmetric algorithms are limited to the two the identity providers we expect sign with;
# HS384/512, PS*, EdDSA would each need their own key handling and tests.
JWT_ALGORITHMS = frozenset({"HS256", "RS256", "ES256"})
KafkaSecurityProtocol = Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"]
KafkaSaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def proxy_networks(spec: str) -> tuple[Network, ...]:
    """TRUSTED_PROXIES parsed once per distinct value (asked on every request).

    Raises ValueError on an entry that is not a CIDR or address, so a mistyped
    setting fails at start instead of quietly trusting nobody or everybody.
    """
    entries = [entry.strip() for entry in spec.split(",") if entry.strip()]
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


class Settings(BaseSettings):
    """Typed view of the environment; every field documents its variable."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    payment_service_port: int = Field(5505, description="HTTP port of the ingress.")
    payment_service_host: str = Field("0.0.0.0", description="Interface the ingress binds.")
    payment_service_name: str = Field("payment", description="Service name used in logs.")
    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/pika_payment",
        description="Postgres URL; plain postgresql:// or postgresql+asyncpg:// accepted.",
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis for idempotency keys.")
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap list.")
    kafka_security_protocol: KafkaSecurityProtocol = Field(
        "PLAINTEXT", description="How clients talk to Kafka: PLAINTEXT (dev only), "
        "SASL_PLAINTEXT, SASL_SSL or SSL (mutual TLS).",
    )
    kafka_sasl_mechanism: KafkaSaslMechanism = Field(
        "SCRAM-SHA-512", description="SASL mechanism when the protocol is SASL_*."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user (the KafkaUser).")
    kafka_sasl_password: str | None = Field(None, description="SASL password (a secret).")
    kafka_ssl_cafile: str | None = Field(
        None, description="CA bundle that signs the brokers' certificates (SSL, SASL_SSL)."
    )
    kafka_ssl_certfile: str | None = Field(None, description="Client certificate (mutual TLS).")
    kafka_ssl_keyfile: str | None = Field(None, description="Key of the client certificate.")
    kafka_command_partitions: int = Field(
        6, description="Partitions of payment.commands and payment.commands.internal."
    )
    kafka_event_partitions: int = Field(6, description="Partitions of payment.events.")
    kafka_create_topics: bool = Field(
        True, description="`pika-payment migrate` creates missing topics. False where an "
        "operator owns them (the Strimzi KafkaTopic resources in k8s): the Job then needs no "
        "right to create topics and never makes one with the wrong partitions or replicas.",
    )
    kafka_topic_replication_factor: int = Field(
        1, gt=0, description="Replicas of each topic `migrate` creates (1: one local broker).",
    )
    kafka_command_retention_days: int = Field(
        7, gt=0, description="retention.ms of payment.commands and payment.commands.internal, "
        "in days (kafka-topics.yaml): how long a command can be redelivered. Only checked "
        "against COMMAND_ID_RETENTION_DAYS; the broker's topic config is what applies.",
    )
    kafka_event_retention_days: int = Field(
        7, gt=0, description="retention.ms of payment.events, in days (kafka-topics.yaml): how "
        "long an event can be redelivered to the notify worker. Only checked against "
        "NOTIFICATION_RETENTION_DAYS; the broker's topic config is what applies.",
    )
    topic_prefix: str = Field(
        "", description="Prefix of every topic and consumer group name (tests isolate by it)."
    )
    payment_dev_mode: bool = Field(
        False, description="Development machine: placeholder secrets are accepted and "
        "`python -m devtools token` mints tokens. Off everywhere else, so a deployment that forgot "
        "a secret refuses to start instead of running with a value anyone can read in git.",
    )
    payment_jwt_secret: str = Field(
        "dev-secret-change-me", description="HS256 secret of user/service/admin JWTs."
    )
    payment_jwt_algorithms: str = Field(
        "HS256", description="Comma-separated algorithms a token may be signed with: HS256 "
        "(PAYMENT_JWT_SECRET), or RS256 / ES256 (PAYMENT_JWT_PUBLIC_KEY or PAYMENT_JWT_JWKS_URL).",
    )
    payment_jwt_public_key: str | None = Field(
        None, description="PEM public key (RSA or EC) that RS256/ES256 tokens verify against."
    )
    payment_jwt_jwks_url: str | None = Field(
        None, description="JWKS document of the identity provider; tokens name their key by `kid`."
    )
    payment_jwt_audience: str = Field(
        "pika-payment", description="`aud` a token must carry: tokens minted for another "
        "service are refused here.",
    )
    payment_jwt_issuer: str = Field("pika-auth", description="`iss` a token must carry.")
    payment_jwt_max_lifetime_seconds: int = Field(
        86_400, gt=0, description="Longest `exp - iat` accepted: a stolen token is useful "
        "for at most this long, whatever lifetime its issuer gave it.",
    )
    stripe_secret_key: str = Field("sk_test_dev", description="Stripe secret key.")
    stripe_publishable_key: str = Field("pk_test_dev", description="Stripe publishable key.")
    stripe_webhook_secret: str = Field("whsec_dev", description="Stripe webhook signing secret.")
    stripe_api_base: str | None = Field(None, description="Stripe API base (the emulator here).")
    stripe_api_version: str = Field("2023-10-16", description="Pinned Stripe API version.")
    checkout_success_url: str = Field(
        "http://127.0.0.1:5505/payment/health?checkout=success",
        description="Where Stripe Checkout sends the customer after paying.",
    )
    checkout_cancel_url: str = Field(
        "http://127.0.0.1:5505/payment/health?checkout=cancel",
        description="Where Stripe Checkout sends the customer who gives up.",
    )

    credit_expiry_days: int = Field(365, gt=0, description="Lifetime of a granted batch.")
    max_credit_balance: int = Field(10_000, gt=0, description="Most credits one user may hold.")
    min_credit_purchase: int = Field(10, gt=0, description="Fewest credits one purchase buys.")
    max_daily_transactions: int = Field(100, gt=0, description="Write transactions a user a day.")
    max_transaction_amount: int = Field(5000, gt=0, description="Most credits in one command.")
    default_credit_price: int = Field(
        100, gt=0, description="Price of one credit in minor units of the default currency."
    )
    default_currency: str = Field("usd", min_length=3, max_length=3)

    rate_limit_namespace: str = Field(
        "pika", description="Redis key prefix of the rate-limit counters (shared by replicas)."
    )
    rate_limit_reads_per_minute: int = Field(600, gt=0, description="GETs per user a minute.")
    rate_limit_writes_per_minute: int = Field(60, gt=0, description="Writes per user a minute.")
    rate_limit_ip_per_minute: int = Field(
        1200, gt=0, description="Requests per client address a minute, per group."
    )
    payment_reply_timeout: float = Field(5.0, description="Seconds an HTTP write waits.")
    trusted_proxies: str = Field(
        "", description="Comma-separated CIDRs of the reverse proxies in front of the ingress "
        "whose X-Forwarded-For is believed; empty = no proxy is trusted, the peer is the client.",
    )
    ingress_metrics_port: int = Field(
        9100, ge=0, le=65535, description="Port of the ingress's own /metrics listener (kept off "
        "the public API port); 0 = off.",
    )
    ingress_metrics_host: str = Field(
        "127.0.0.1", description="Interface of the ingress metrics listener (0.0.0.0 in a pod, "
        "so Prometheus reaches it while the Service exposes only the API port).",
    )
    membership_renewal_grace_hours: int = Field(
        24, ge=0, le=24 * 30,
        description="Membership credits outlive their period by this much, so a renewal "
        "collected late still finds them to roll over.",
    )
    fraud_purchase_window_minutes: int = Field(
        60, gt=0, description="Window of the purchase-velocity rule."
    )
    fraud_max_purchases_per_window: int = Field(
        5, gt=0, description="More paid purchases than this in the window raise a flag "
        "(medium; high, with the purchased credits frozen, at twice as many)."
    )
    fraud_failure_window_minutes: int = Field(
        1440, gt=0, description="Window of the repeated-payment-failure rule."
    )
    fraud_max_payment_failures: int = Field(
        3, gt=0, description="This many failed payments in the window raise a flag (medium)."
    )
    fraud_max_accounts_per_card: int = Field(
        2, gt=0, description="More accounts than this paying with one card raise a high flag."
    )
    fraud_promo_window_minutes: int = Field(
        1440, gt=0, description="Window of the promo-abuse rule."
    )
    fraud_max_promo_accounts_per_source: int = Field(
        3, gt=0, description="More accounts than this redeeming one code from one client "
        "address raise a flag (medium).",
    )
    fraud_hold_days: int = Field(
        180, gt=0, description="How long credits frozen by a high flag stay held unresolved."
    )
    promo_reservation_ttl_seconds: int = Field(
        1800, gt=0, description="How long an applied promo code stays reserved before a "
        "payment starts (starting one extends it by as much again).",
    )
    hold_ttl_seconds: int = Field(900, gt=0, description="Default lifetime of a hold.")
    idempotency_ttl_seconds: int = Field(86_400, description="How long HTTP replies replay.")
    worker_batch_size: int = Field(500, gt=0, description="Most commands one DB transaction.")
    relay_batch_size: int = Field(1000, gt=0, description="Most outbox rows one publish.")
    relay_poll_interval: float = Field(0.02, gt=0, description="Idle poll of the outbox, s.")
    expire_interval_seconds: int = Field(60, gt=0, description="How often `run` expires.")
    kafka_session_timeout_ms: int = Field(10_000, description="Consumer session timeout.")
    kafka_heartbeat_interval_ms: int = Field(3_000, description="Consumer heartbeat.")
    kafka_startup_timeout_seconds: float = Field(
        30.0, gt=0,
        description="How long the ingress and `migrate` retry reaching Kafka at start "
        "before they exit non-zero (the ingress never serves with a dead producer).",
    )
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of the worker/relay/notify probes and metrics "
        "(/health, /ready, /metrics); 0 = off."
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Interface of the worker/relay/notify probe listener "
        "(0.0.0.0 in a pod, where the kubelet and Prometheus call it)."
    )

    smtp_host: str = Field("127.0.0.1", description="SMTP relay of the notify worker.")
    smtp_port: int = Field(1025, gt=0, description="SMTP port (1025: mailpit / aiosmtpd).")
    smtp_user: str | None = Field(None, description="SMTP login; unset = no AUTH.")
    smtp_password: str | None = Field(None, description="SMTP password (a secret).")
    smtp_from: str = Field("no-reply@pika.example", description="From address of every email.")
    smtp_starttls: bool = Field(False, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_timeout: float = Field(10.0, gt=0, description="Seconds one SMTP send may take.")
    expiry_reminder_days: int = Field(
        7, gt=0, description="`remind` warns about batches expiring within this many days."
    )
    notify_max_attempts: int = Field(
        5, gt=0, description="SMTP tries of one email before it is dead-lettered."
    )
    notify_retry_base_seconds: float = Field(
        5.0, gt=0, description="First SMTP retry delay; doubles per try."
    )
    notify_retry_max_seconds: float = Field(300.0, gt=0, description="Cap of the retry delay.")
    outbox_retention_days: int = Field(
        7, gt=0, description="`prune` deletes outbox rows sent longer ago than this."
    )
    command_id_retention_days: int = Field(
        30, gt=0, description="`prune` deletes rejected commands' ids processed longer ago "
        "than this; must exceed KAFKA_COMMAND_RETENTION_DAYS by two weeks (see "
        "services/retention/windows.py). Applied commands are kept for good.",
    )
    stripe_event_retention_days: int = Field(
        30, ge=3, description="`prune` deletes Stripe webhook inbox rows older than this; at "
        "least Stripe's 3 days of retries.",
    )
    notification_retention_days: int = Field(
        30, gt=0, description="`prune` deletes `sent_notifications` rows (sent, skipped or "
        "failed; never pending) claimed longer ago than this; must exceed "
        "KAFKA_EVENT_RETENTION_DAYS by two weeks (see services/retention/windows.py).",
    )
    expiry_reminder_retention_days: int = Field(
        30, gt=0, description="`prune` deletes `expiry_reminders` rows of batches that expired "
        "longer ago than this (a batch not yet expired keeps its row: it stops a second "
        "reminder).",
    )
    prune_batch_size: int = Field(
        5000, gt=0, description="Rows `prune` deletes per transaction (short locks, small WAL bursts)."
    )
    # --- Admin sign-in (OpenID Connect) to the console and the dashboard --------------------
    admin_oidc_issuer: str | None = Field(
        None, description="Issuer URL of the identity provider admins sign in with; its "
        "`/.well-known/openid-configuration` names the endpoints and the JWKS. Unset: only "
        "bearer tokens (and, in development mode, the development sign-in).",
    )
    admin_oidc_client_id: str | None = Field(
        None, description="Client id of the payment console at the identity provider; the ID "
        "token's `aud` must contain it.",
    )
    admin_oidc_client_secret: str | None = Field(
        None, description="Client secret (a secret, from the environment only); unset = a "
        "public client that proves itself with PKCE alone.",
    )
    admin_oidc_redirect_url: str | None = Field(
        None, description="Absolute URL of `/payment/admin/callback` as the browser reaches it "
        "(registered at the identity provider).",
    )
    admin_oidc_roles_claim: str = Field(
        "roles", min_length=1, description="ID token claim that lists the identity's roles; "
        "only an identity whose list contains `admin` gets a console session.",
    )
    admin_oidc_scopes: str = Field(
        "openid email profile", description="Scopes asked for at sign-in (must include openid)."
    )
    admin_session_seconds: int = Field(
        8 * 3600, gt=0, le=7 * 86_400, description="Lifetime of a console session (Redis "
        "record and cookie); the admin signs in again after it.",
    )
    admin_sign_in_timeout_seconds: int = Field(
        600, gt=0, le=3600, description="How long a started sign-in (state, nonce, PKCE "
        "verifier) waits for the identity provider's callback.",
    )

    @property
    def admin_oidc_configured(self) -> bool:
        """Sign-in through the identity provider needs its issuer, our client id and callback."""
        return bool(self.admin_oidc_issuer and self.admin_oidc_client_id and self.admin_oidc_redirect_url)

    log_level: str = Field("INFO")

    @field_validator("payment_jwt_algorithms")
    @classmethod
    def _known_algorithms(cls, value: str) -> str:
        names = [name.strip().upper() for name in value.split(",") if name.strip()]
        unknown = sorted(set(names) - JWT_ALGORITHMS)
        if not names or unknown:
            raise ValueError(
                f"PAYMENT_JWT_ALGORITHMS must list some of {', '.join(sorted(JWT_ALGORITHMS))}; "
                f"got {value!r}"
            )
        return ",".join(dict.fromkeys(names))

    @model_validator(mode="after")
    def _one_kind_of_jwt_key(self) -> "Settings":
        """An HS256 secret next to a public key invites algorithm confusion: refuse the mix."""
        asymmetric = [n for n in ("payment_jwt_public_key", "payment_jwt_jwks_url") if getattr(self, n)]
        if len(asymmetric) > 1:
            raise ValueError("set PAYMENT_JWT_PUBLIC_KEY or PAYMENT_JWT_JWKS_URL, not both")
        if asymmetric and "HS256" in self.jwt_algorithms:
            raise ValueError(
                f"PAYMENT_JWT_ALGORITHMS includes HS256 while {asymmetric[0].upper()} is set: "
                "list only RS256 and/or ES256"
            )
        if not asymmetric and self.jwt_algorithms != ("HS256",):
            raise ValueError(
                "RS256/ES256 in PAYMENT_JWT_ALGORITHMS need PAYMENT_JWT_PUBLIC_KEY or "
                "PAYMENT_JWT_JWKS_URL"
            )
        return self

    @property
    def jwt_algorithms(self) -> tuple[str, ...]:
        return tuple(self.payment_jwt_algorithms.split(","))


    @model_validator(mode="after")
    def _kafka_security_is_complete(self) -> Self:
        """A half-configured Kafka login fails here, at startup, not at the first send."""
        from services.kafka_security import check_kafka_security  # imports FastStream: lazily

        check_kafka_security(self)
        return self

    @model_validator(mode="after")
    def _dedupe_records_outlive_their_messages(self) -> Self:
        """A command id pruned while Kafka may still redeliver its message is applied twice;
        an email claim pruned while its event may come back sends that email twice."""
        from services.retention.windows import check_command_id_window, check_notification_window

        check_command_id_window(self.command_id_retention_days, self.kafka_command_retention_days)
        check_notification_window(self.notification_retention_days, self.kafka_event_retention_days)
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_proxy_networks(cls, value: str) -> str:
        proxy_networks(value)  # a typo must stop the process, not silently trust nobody
        return value

    @field_validator("default_currency")
    @classmethod
    def _lower_currency(cls, value: str) -> str:
        return value.lower()

    @property
    def async_database_url(self) -> str:
        """SQLAlchemy URL with the asyncpg driver, whatever form the operator gave."""
        url = self.database_url
        for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix) :]
        raise ValueError(f"DATABASE_URL must be a postgresql URL, got scheme of {url!r}")

    @property
    def plain_database_url(self) -> str:
        """libpq form (asyncpg.connect, psql) of DATABASE_URL."""
        return "postgresql://" + self.async_database_url[len("postgresql+asyncpg://") :]

    @property
    def trusted_proxy_networks(self) -> tuple[Network, ...]:
        return proxy_networks(self.trusted_proxies)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def commands_topic(self) -> str:
        return self.topic("payment.commands")

    @property
    def internal_commands_topic(self) -> str:
        """Commands of the payment zone: written only by the ingress and the payment jobs."""
        return self.topic("payment.commands.internal")

    @property
    def events_topic(self) -> str:
        return self.topic("payment.events")

    @property
    def commands_dlq_topic(self) -> str:
        return self.topic("payment.commands.dlq")

    @property
    def events_dlq_topic(self) -> str:
        return self.topic("payment.events.dlq")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
