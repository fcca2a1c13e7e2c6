"""`pika-payment migrate`: create the database if needed, then run Alembic to head."""

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from services.db import ensure_database
from services.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(settings: Settings) -> Config:
    ini = ROOT / "alembic.ini"
    config = Config(str(ini)) if ini.exists() else Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = settings.async_database_url
    return config


def migrate(settings: Settings) -> None:
    """Idempotent: safe to run on every start and from several replicas in turn."""
    asyncio.run(ensure_database(settings.plain_database_url))
    command.upgrade(alembic_config(settings), "head")
