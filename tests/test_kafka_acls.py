"""Who may do what on the Kafka cluster: the KafkaUsers, their ACLs and the network.

Offline, like tests/test_deploy_manifests.py (whose loaders it reuses). Two parts:

* The ACL matrix, asserted as a contract: which principal may write and read which
  topic with which group, and the trust split it exists for (booking publishes
  payment.commands only; payment.commands.internal, where value-creating commands
  go, is written by the ingress and the CLI jobs alone). The workloads must log in
  as users that exist, with the password from their own user's Secret, and reach the
  brokers through the labels the brokers' NetworkPolicy admits.
* The Strimzi resources against Strimzi's own CRD schemas for kafka.strimzi.io/v1
  (the version Strimzi 1.x serves, alone), strict: an unknown field fails, as with
  `kubectl apply`'s strict field validation. The schemas come as ajv validators
  compiled from the CRDs of Strimzi 0.49.0 and 1.0.0 by the npm package
  @kubernetes-models/strimzi-kafka-operator 1.0.1 (SCHEMAS_VERSION), pinned with
  its integrity hashes in tests/strimzi_schemas/package-lock.json and installed by
  `make strimzi-schemas` (which `make test` runs); tests/strimzi_schemas/
  validate.mjs runs them on Node.js. Without node or the installed package those
  tests fail, they never skip.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_deploy_manifests import (
    K8S_DIR,
    KAFKA_TOPICS,
    _component,
    _configmap_data,
    _docs_of,
    _k8s_docs,
    _label_selector_matches,
    _pod_spec,
    _pod_template_labels,
    _workloads,
)
from workers.ledger import GROUP_ID as LEDGER_GROUP
from workers.notify import GROUP_ID as NOTIFY_GROUP

STRIMZI_KINDS = ("Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser")
# The validators of Strimzi's CRD schemas: this package, this version, generated from
# the CRDs of these Strimzi releases (its package.json names them; both serve v1).
# Bumping the package means updating all three here and in docs/testing.md.
SCHEMAS_DIR = Path(__file__).resolve().parent / "strimzi_schemas"
SCHEMAS_PACKAGE = "@kubernetes-models/strimzi-kafka-operator"
SCHEMAS_VERSION = "1.0.1"
STRIMZI_CRD_RELEASES = ("0.49.0", "1.0.0")
KAFKA_CLIENT_LABEL = {"pika-payment/kafka-client": "true"}
KAFKA_CLIENT_NAMESPACE_LABEL = {"pika-payment/kafka-clients": "true"}
INTERNAL = "payment.commands.internal"

# The component a workload runs (its app.kubernetes.io/component) -> its KafkaUser.
USER_OF_COMPONENT = {
    "ingress": "payment-ingress",
    "worker": "payment-worker",
    "relay": "payment-relay",
    "notify": "payment-notify",
    "expire": "payment-jobs",
    "reconcile": "payment-jobs",
    "remind": "payment-remind",
    "migrate": "payment-migrate",
}
# Workloads that never talk to Kafka: no KafkaUser, no kafka-client label.
NOT_KAFKA_CLIENTS = frozenset({"prune"})

WRITE = frozenset({"Write", "Describe"})
READ = frozenset({"Read", "Describe"})
# user -> {(resource type, name, pattern type): operations}; exactly these, no more.
ACL_MATRIX: dict[str, dict[tuple[str, str, str], frozenset[str]]] = {
    "booking": {("topic", "payment.commands", "literal"): WRITE},
    "payment-ingress": {
        ("topic", INTERNAL, "literal"): WRITE,
        ("topic", "payment.events", "literal"): READ,  # live feed, no consumer group
    },
    "payment-worker": {
        ("topic", "payment.commands", "literal"): READ,
        ("topic", INTERNAL, "literal"): READ,
        ("group", LEDGER_GROUP, "literal"): frozenset({"Read"}),
        ("topic", "payment.commands.dlq", "literal"): WRITE,
    },
    "payment-relay": {("topic", "payment.events", "literal"): WRITE},
    "payment-notify": {
        ("topic", "payment.events", "literal"): READ,
        ("group", NOTIFY_GROUP, "literal"): frozenset({"Read"}),
        ("topic", "payment.events.dlq", "literal"): WRITE,
    },
    "payment-jobs": {("topic", INTERNAL, "literal"): WRITE},
    "payment-remind": {("topic", "payment.events", "literal"): WRITE},
    "payment-migrate": {
        ("topic", name, "literal"): frozenset({"Create", "Describe"}) for name in KAFKA_TOPICS
    },
    "notification-consumer": {
        ("topic", "payment.events", "literal"): READ,
        ("group", "notification-consumer", "prefix"): frozenset({"Read"}),
    },
}


# --------------------------------------------------------------------- helpers
def _users() -> dict[str, dict[str, Any]]:
    return {user["metadata"]["name"]: user for user in _docs_of("KafkaUser")}


def _acls(user: dict[str, Any]) -> dict[tuple[str, str, str], frozenset[str]]:
    """Allowed operations per resource; deny rules are not used in this cluster."""
    granted: dict[tuple[str, str, str], frozenset[str]] = {}
    for rule in user["spec"]["authorization"]["acls"]:
        assert rule.get("type", "allow") == "allow", "deny rules would hide a grant"
        resource = rule["resource"]
        key = (resource["type"], resource.get("name", ""), resource.get("patternType", "literal"))
        operations = set(rule.get("operations", [])) | (
            {rule["operation"]} if "operation" in rule else set()
        )
        granted[key] = granted.get(key, frozenset()) | frozenset(operations)
    return granted


def _matches(resource_name: str, pattern_type: str, name: str) -> bool:
    if resource_name == "*":
        return True
    if pattern_type == "prefix":
        return name.startswith(resource_name)
    return name == resource_name


def _may(user: dict[str, Any], operation: str, kind: str, name: str) -> bool:
    return any(
        resource_type == kind
        and _matches(resource_name, pattern, name)
        and ({operation, "All"} & operations)
        for (resource_type, resource_name, pattern), operations in _acls(user).items()
    )


def _writers(topic: str) -> set[str]:
    return {name for name, user in _users().items() if _may(user, "Write", "topic", topic)}


def _topic_names() -> set[str]:
    return {t["spec"].get("topicName", t["metadata"]["name"]) for t in _docs_of("KafkaTopic")}


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = _pod_spec(workload)["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def _kafka() -> dict[str, Any]:
    (kafka,) = _docs_of("Kafka")
    return kafka


# ------------------------------------------------------------------ the matrix
def test_each_user_has_exactly_the_acls_of_what_it_does() -> None:
    users = _users()
    assert users.keys() == ACL_MATRIX.keys()
    for name, user in users.items():
        assert user["spec"]["authentication"]["type"] == "scram-sha-512", name
        assert user["spec"]["authorization"]["type"] == "simple", name
        assert _acls(user) == ACL_MATRIX[name], name


def test_only_the_ingress_and_the_jobs_write_value_creating_commands() -> None:
    assert _writers(INTERNAL) == {"payment-ingress", "payment-jobs"}
    booking = _users()["booking"]
    assert not _may(booking, "Write", "topic", INTERNAL)
    written = {topic for topic in _topic_names() if _may(booking, "Write", "topic", topic)}
    assert written == {"payment.commands"}
    assert not any(_may(booking, "Read", "topic", topic) for topic in _topic_names())


def test_the_matrix_checker_sees_a_grant_that_breaks_the_split() -> None:
    """The helpers above would notice booking given the internal topic by a prefix."""
    booking = copy.deepcopy(_users()["booking"])
    booking["spec"]["authorization"]["acls"][0]["resource"].update(
        name="payment.commands", patternType="prefix"
    )
    assert _may(booking, "Write", "topic", INTERNAL)


def test_events_are_written_by_the_relay_and_the_reminder_job_only() -> None:
    assert _writers("payment.events") == {"payment-relay", "payment-remind"}
    assert _writers("payment.commands") == {"booking"}
    assert _writers("payment.commands.dlq") == {"payment-worker"}
    assert _writers("payment.events.dlq") == {"payment-notify"}


def test_every_topic_an_acl_names_is_a_kafka_topic() -> None:
    topics = _topic_names()
    for name, user in _users().items():
        for resource_type, resource_name, pattern in _acls(user):
            if resource_type != "topic":
                continue
            if pattern == "literal":
                assert resource_name in topics, f"{name}: ACL on missing topic {resource_name}"
            else:
                assert any(t.startswith(resource_name) for t in topics), (name, resource_name)
    assert topics == KAFKA_TOPICS.keys()


def test_every_workload_logs_in_as_its_own_existing_user() -> None:
    users = _users()
    seen = set()
    for workload in _workloads():
        component = _component(workload)
        env = _env(_container(workload))
        if component in NOT_KAFKA_CLIENTS:
            assert "KAFKA_SASL_USERNAME" not in env and "KAFKA_SASL_PASSWORD" not in env
            continue
        username = env["KAFKA_SASL_USERNAME"]["value"]
        assert username == USER_OF_COMPONENT[component], component
        assert username in users, f"{component}: no KafkaUser {username}"
        secret = env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        # Strimzi's User Operator names the Secret after the user; key `password`.
        assert secret == {"name": username, "key": "password"}, component
        seen.add(component)
    assert seen == USER_OF_COMPONENT.keys()


def test_the_app_speaks_sasl_ssl_to_a_scram_tls_listener() -> None:
    config = _configmap_data()
    assert config["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert "KAFKA_SASL_PASSWORD" not in config
    kafka = _kafka()
    assert kafka["spec"]["kafka"]["authorization"] == {"type": "simple"}
    listeners = {listener["port"]: listener for listener in kafka["spec"]["kafka"]["listeners"]}
    for listener in listeners.values():
        assert listener["authentication"] == {"type": "scram-sha-512"}, listener["name"]
    for server in config["KAFKA_BOOTSTRAP_SERVERS"].split(","):
        assert listeners[int(server.rpartition(":")[2])]["tls"] is True, server


def test_every_workload_mounts_the_cluster_ca_the_config_names() -> None:
    cafile = Path(_configmap_data()["KAFKA_SSL_CAFILE"])
    cluster_ca = f"{_kafka()['metadata']['name']}-cluster-ca-cert"
    for workload in _workloads():
        label = workload["metadata"]["name"]
        if _component(workload) in NOT_KAFKA_CLIENTS:
            continue
        mounts = {m["name"]: m for m in _container(workload)["volumeMounts"]}
        volumes = {v["name"]: v for v in _pod_spec(workload)["volumes"]}
        (name,) = [n for n, m in mounts.items() if cafile.parent == Path(m["mountPath"])]
        assert mounts[name].get("readOnly") is True, label
        secret = volumes[name]["secret"]
        assert secret["secretName"] == cluster_ca, label
        assert {"key": "ca.crt", "path": cafile.name} in secret["items"], label


# ------------------------------------------------------------------ the network
def _peers(listener: dict[str, Any]) -> list[dict[str, Any]]:
    peers: list[dict[str, Any]] = listener["networkPolicyPeers"]
    return peers


def test_brokers_admit_only_labelled_client_pods() -> None:
    for listener in _kafka()["spec"]["kafka"]["listeners"]:
        peers = _peers(listener)
        assert peers, f"listener {listener['name']} would be open to every pod"
        for peer in peers:
            assert peer["podSelector"]["matchLabels"] == KAFKA_CLIENT_LABEL, listener["name"]
            if "namespaceSelector" in peer:
                assert peer["namespaceSelector"]["matchLabels"] == KAFKA_CLIENT_NAMESPACE_LABEL
    for workload in _workloads():
        labels = _pod_template_labels(workload)
        admitted = KAFKA_CLIENT_LABEL.items() <= labels.items()
        assert admitted == (_component(workload) not in NOT_KAFKA_CLIENTS), (
            workload["metadata"]["name"]
        )


def _policies_for(labels: dict[str, str]) -> Iterator[dict[str, Any]]:
    for policy in _docs_of("NetworkPolicy"):
        if _label_selector_matches(policy["spec"]["podSelector"], labels):
            yield policy


def test_payment_pods_accept_only_the_ingress_ports_and_reach_only_their_dependencies() -> None:
    kafka_ports = {listener["port"] for listener in _kafka()["spec"]["kafka"]["listeners"]}
    for workload in _workloads():
        labels = _pod_template_labels(workload)
        policies = list(_policies_for(labels))
        types = {t for p in policies for t in p["spec"]["policyTypes"]}
        assert types == {"Ingress", "Egress"}, f"{workload['metadata']['name']}: not isolated"
        ingress_ports = {
            (port["port"], peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"])
            for p in policies
            for rule in p["spec"].get("ingress", [])
            for port in rule["ports"]
            for peer in rule["from"]
        }
        # The API from the ingress controller or the Gateway's data plane; the metrics
        # (and, for the workers, probe) port of the long-running pods from Prometheus
        # only; the jobs accept nothing.
        expected = {
            "ingress": {(5505, "ingress-nginx"), (5505, "gateway-system"), (9100, "monitoring")},
            "worker": {(9100, "monitoring")},
            "relay": {(9100, "monitoring")},
            "notify": {(9100, "monitoring")},
        }
        assert ingress_ports == expected.get(_component(workload), set()), _component(workload)
        egress = [rule for p in policies for rule in p["spec"].get("egress", [])]
        to_kafka = [
            rule for rule in egress
            if any(
                peer.get("podSelector", {}).get("matchLabels", {}).get("strimzi.io/cluster")
                == _kafka()["metadata"]["name"]
                for peer in rule.get("to", [])
            )
        ]
        assert to_kafka, workload["metadata"]["name"]
        assert {port["port"] for rule in to_kafka for port in rule["ports"]} == kafka_ports
        open_ports = {port["port"] for rule in egress for port in rule.get("ports", [])}
        assert {53, 443, 5432, 6379} <= open_ports
        assert all("ports" in rule for rule in egress), "an egress rule without ports"


# ------------------------------------------------------------------ CRD schemas
def _installed_schema_package() -> dict[str, Any]:
    manifest = SCHEMAS_DIR / "node_modules" / Path(*SCHEMAS_PACKAGE.split("/")) / "package.json"
    if not manifest.is_file():
        pytest.fail(f"{SCHEMAS_PACKAGE} is not installed: run `make strimzi-schemas` (needs npm)")
    package: dict[str, Any] = json.loads(manifest.read_text(encoding="utf-8"))
    return package


def _schema_errors(docs: list[dict[str, Any]]) -> list[list[str]]:
    """Per resource, the refusals of the validators compiled from Strimzi's CRDs."""
    _installed_schema_package()
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the Strimzi schema check runs on Node.js 20+")
    result = subprocess.run(
        [node, str(SCHEMAS_DIR / "validate.mjs")],
        input=json.dumps(docs), capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    answers: list[list[dict[str, str]]] = json.loads(result.stdout)
    assert len(answers) == len(docs)
    return [[f"{e['path']}: {e['message']}" for e in errors] for errors in answers]


def _strimzi_resources() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path, doc in _k8s_docs() if doc.get("kind") in STRIMZI_KINDS]


def test_the_schemas_are_the_pinned_package_built_from_the_named_strimzi_releases() -> None:
    lock = json.loads((SCHEMAS_DIR / "package-lock.json").read_text(encoding="utf-8"))
    locked = lock["packages"][f"node_modules/{SCHEMAS_PACKAGE}"]
    assert locked["version"] == SCHEMAS_VERSION and locked["integrity"].startswith("sha512-")
    package = _installed_schema_package()
    assert package["version"] == SCHEMAS_VERSION, "node_modules is stale: make strimzi-schemas"
    releases = tuple(
        url.rsplit("/", 2)[1] for url in package["crd-generate"]["input"]
    )
    assert releases == STRIMZI_CRD_RELEASES, releases


def test_every_strimzi_resource_is_v1() -> None:
    """Strimzi 1.x serves kafka.strimzi.io/v1 only: a v1beta2 resource is refused."""
    versions = {
        (doc["kind"], doc["metadata"]["name"]): doc["apiVersion"]
        for _path, doc in _strimzi_resources()
    }
    assert {kind for kind, _name in versions} == set(STRIMZI_KINDS)
    assert {v for v in versions.values()} == {"kafka.strimzi.io/v1"}, versions


def test_strimzi_resources_validate_against_the_strimzi_crds() -> None:
    resources = _strimzi_resources()
    answers = _schema_errors([doc for _path, doc in resources])
    errors = [
        f"{path.relative_to(K8S_DIR)} {doc['kind']}/{doc['metadata']['name']}: {error}"
        for (path, doc), found in zip(resources, answers, strict=True)
        for error in found
    ]
    assert not errors, "\n".join(errors)
    assert len(resources) == len(_docs_of("KafkaUser")) + len(_docs_of("KafkaTopic")) + 2


@pytest.mark.parametrize(
    ("kind", "break_it", "expected"),
    [
        ("KafkaUser", lambda d: d["spec"]["authorization"]["acls"][0].update(
            operations=["Writ"]), "Writ"),
        ("KafkaUser", lambda d: d["spec"]["authentication"].update(type="scram-sha-256"),
         "scram-sha-256"),
        ("KafkaUser", lambda d: d["metadata"].update(label={"a": "b"}), "unknown field"),
        ("Kafka", lambda d: d["spec"]["kafka"]["listeners"][0]["authentication"].update(
            type="scram"), "scram"),
        ("Kafka", lambda d: d["spec"]["kafka"].update(autorization={"type": "simple"}),
         "autorization"),
        ("Kafka", lambda d: d["spec"]["kafka"]["listeners"][0].pop("type"),
         '"missingProperty":"type"'),
        ("KafkaNodePool", lambda d: d["spec"].pop("roles"), '"missingProperty":"roles"'),
        ("KafkaNodePool", lambda d: d["spec"].update(roles=["zookeeper"]), "zookeeper"),
        ("KafkaTopic", lambda d: d["spec"].update(partitions="twelve"), "twelve"),
    ],
    ids=["acl-operation", "user-mechanism", "misspelt-metadata", "listener-auth",
         "misspelt-field", "listener-type-missing", "pool-roles-missing", "pool-role",
         "partitions"],
)
def test_the_schema_check_rejects_what_strimzi_would(kind: str, break_it: Any, expected: str) -> None:
    valid = copy.deepcopy(_docs_of(kind)[0])
    broken = copy.deepcopy(valid)
    break_it(broken)
    assert valid != broken
    ok, refused = _schema_errors([valid, broken])
    assert ok == []
    assert refused and any(expected in error for error in refused), refused


def test_the_schema_check_refuses_kinds_it_has_no_schema_for() -> None:
    kafka = copy.deepcopy(_kafka())
    old = {**kafka, "apiVersion": "kafka.strimzi.io/v1beta3"}
    typo = {**kafka, "kind": "Kafkaa"}
    builtin = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    for errors in _schema_errors([old, typo, builtin]):
        assert errors and "no validator" in errors[0], errors


def test_the_schema_check_leaves_open_maps_open() -> None:
    """`config` is x-kubernetes-preserve-unknown-fields: Strimzi checks it, not the API."""
    kafka = copy.deepcopy(_kafka())
    kafka["spec"]["kafka"]["config"]["a.setting.strimzi.passes.on"] = {"any": ["shape"]}
    assert _schema_errors([kafka]) == [[]]
