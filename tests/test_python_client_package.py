"""The Python client (clients/python/) installs and works without the service.

A platform service installs `pika-payment-client` next to its own framework and ORM;
it must get the client and its three dependencies, never Litestar, SQLAlchemy,
FastStream or the service's packages. So the wheel is built as a user would build it,
its contents and metadata are read, and it is installed from the client's lock into a
clean virtual environment (no system site packages, not this checkout on the path)
where the service's packages must not import and the client's own tests must pass.
Needs a package index for the wheel's build backend and the locked files (pip's cache
makes a rerun quick).
"""

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from devtools import python_client_contracts as generator
from tests.test_builds import PRODUCT_PACKAGES, locked, pins_of

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "clients" / "python"
LOCK = CLIENT / "requirements.lock"
PYPROJECT = tomllib.loads((CLIENT / "pyproject.toml").read_text())
PACKAGE = "pika_payment_client"
RUNTIME = {"pydantic", "aiokafka", "httpx"}
# What the service runs on and a platform service must not be made to install.
SERVICE_ONLY = {"litestar", "sqlalchemy", "faststream", "pika-payment", "alembic", "stripe"}
# Copied from clients/python for a build or a test run; none of it is the package.
JUNK = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".mypy_cache",
                              ".ruff_cache", ".pytest_cache", ".venv")


def _run(args: list[str | Path], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """A command in a plain environment: no PYTHONPATH or active venv of this run leaks in."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}}
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


# -- the lock (offline) -------------------------------------------------------------


def _wanted() -> list[Requirement]:
    project = PYPROJECT["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["test"]]]


def test_the_client_lock_satisfies_its_pyproject_with_hashes() -> None:
    """A dependency changed in clients/python/pyproject.toml without `make lock` fails here."""
    pins = pins_of(LOCK)
    for requirement in _wanted():
        package = canonicalize_name(requirement.name)
        assert package in pins, f"{requirement} missing from the client's lock: run `make lock`"
        assert requirement.specifier.contains(pins[package][0], prereleases=True), (
            f"the client's lock pins {package}=={pins[package][0]}, its pyproject wants {requirement}"
        )
    unhashed = [package for package, (_, hashes) in pins.items() if not hashes]
    assert not unhashed, unhashed
    assert not SERVICE_ONLY & set(pins), SERVICE_ONLY & set(pins)


def test_the_client_lock_holds_the_versions_the_service_is_tested_with() -> None:
    """The client is tested with the pydantic, aiokafka and httpx the service runs."""
    dev = locked("dev")
    differ = {package: (version, dev.get(package, ("-",))[0])
              for package, (version, _) in pins_of(LOCK).items()
              if dev.get(package, ("-",))[0] != version}
    assert not differ, f"client lock vs dev.lock: {differ}: run `make lock`"


# -- the wheel ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client's wheel, built as `pip wheel clients/python` builds it (from a copy:
    setuptools leaves build/ and *.egg-info in the tree it builds)."""
    built = tmp_path_factory.mktemp("client-wheel")
    source = built / "source"
    shutil.copytree(CLIENT, source, ignore=JUNK)
    _ok(_run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", built,
              source], cwd=built))
    (found,) = built.glob("pika_payment_client-*.whl")
    return found


def _metadata(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return archive.read(name).decode().splitlines()


def test_the_wheel_holds_the_client_and_nothing_else(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/", 1)[0] for name in names}
    (dist_info,) = top - {PACKAGE}
    assert dist_info.startswith(f"{PACKAGE}-") and dist_info.endswith(".dist-info"), top
    assert not top & (PRODUCT_PACKAGES | {"devtools", "tests", "clients", "examples"})
    assert not [n for n in names if "tests" in n.split("/")[:-1] or n.split("/")[-1].startswith("test_")]
    assert f"{PACKAGE}/__init__.py" in names and f"{PACKAGE}/py.typed" in names
    for module in generator.expected():
        assert f"{PACKAGE}/contracts/{module}" in names, module


def test_the_wheel_requires_only_the_clients_dependencies(wheel: Path) -> None:
    lines = _metadata(wheel)
    required = [Requirement(line.split(":", 1)[1].strip()) for line in lines
                if line.startswith("Requires-Dist:")]
    unconditional = {canonicalize_name(r.name) for r in required if r.marker is None}
    everything = {canonicalize_name(r.name) for r in required}
    assert unconditional == RUNTIME, unconditional ^ RUNTIME
    assert not SERVICE_ONLY & everything, everything
    assert "Name: pika-payment-client" in lines


# -- a clean install ----------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with the client's lock and its wheel, and nothing else;
    returns its python."""
    home = tmp_path_factory.mktemp("client-venv")
    venv = home / "venv"
    _ok(_run([sys.executable, "-m", "venv", venv], cwd=home))
    python = venv / "bin" / "python"
    _ok(_run([python, "-m", "pip", "install", "--quiet", "--require-hashes", "-r", LOCK], cwd=home))
    _ok(_run([python, "-m", "pip", "install", "--quiet", "--no-deps", wheel], cwd=home))
    return python


def test_the_clean_install_is_consistent(clean_venv: Path) -> None:
    _ok(_run([clean_venv, "-m", "pip", "check"], cwd=clean_venv.parent))
    frozen = _ok(_run([clean_venv, "-m", "pip", "freeze"], cwd=clean_venv.parent))
    installed = {canonicalize_name(line.split("==")[0].split(" @ ")[0]) for line in frozen.splitlines()
                 if line and not line.startswith("#")}
    assert "pika-payment-client" in installed
    assert not SERVICE_ONLY & installed, SERVICE_ONLY & installed


@pytest.mark.parametrize("module", ["litestar", "sqlalchemy", "faststream", "services", "schemas",
                                    "workers", "devtools"])
def test_the_service_does_not_import_in_the_clean_install(clean_venv: Path, module: str) -> None:
    """Run from the venv's folder, so neither this checkout nor its packages are on the path."""
    result = _run([clean_venv, "-c", f"import {module}"], cwd=clean_venv.parent)
    assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr, (
        f"`import {module}` works in the client's clean install"
    )


# Every module of the client, imported in the clean install. A module may need a package
# of an extra (redis, postgres) that this install does not have; nothing else may fail.
IMPORT_ALL = """
import importlib, pkgutil, sys
import pika_payment_client
EXTRAS = {"redis", "asyncpg"}
for info in pkgutil.walk_packages(pika_payment_client.__path__, "pika_payment_client."):
    try:
        importlib.import_module(info.name)
    except ModuleNotFoundError as error:
        if error.name is None or error.name.split(".")[0] not in EXTRAS:
            raise
        print("extra", info.name, error.name, file=sys.stderr)
    print(info.name)
print(pika_payment_client.__file__)
"""


def test_every_client_module_imports_from_the_installed_wheel(clean_venv: Path) -> None:
    *modules, where = _ok(_run([clean_venv, "-c", IMPORT_ALL], cwd=clean_venv.parent)).split()
    assert {f"{PACKAGE}.contracts.{name.removesuffix('.py')}" for name in generator.expected()
            if name != "__init__.py"} <= set(modules), modules
    assert Path(where).is_relative_to(clean_venv.parent.parent), where
    assert not Path(where).is_relative_to(ROOT), "the clean install imported the checkout's copy"


def test_the_clients_own_tests_pass_in_the_clean_install(
    clean_venv: Path, tmp_path: Path
) -> None:
    """The client's tests and its pytest settings, copied away from this checkout so
    neither the service's pyproject nor its tests/conftest.py are picked up."""
    work = tmp_path / "client"
    shutil.copytree(CLIENT / "tests", work / "tests", ignore=JUNK)
    shutil.copy(CLIENT / "pyproject.toml", work / "pyproject.toml")
    result = _run([clean_venv, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=work)
    output = _ok(result)
    assert " passed" in output and "failed" not in output, output[-3000:]


def test_the_clients_tests_are_no_package_named_tests() -> None:
    """The suite collects clients/python/tests next to the service's tests/ (testpaths):
    with an __init__.py both would be the package `tests` and one would not import."""
    assert not (CLIENT / "tests" / "__init__.py").exists()
    assert list((CLIENT / "tests").glob("test_*.py")), "the client has no tests to run"
