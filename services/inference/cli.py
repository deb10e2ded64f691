"""Operator commands: `python -m services.inference.cli migrate`."""
import argparse
from pathlib import Path

from ferkit.db import upgrade
from services.inference.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.inference.cli")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply the database migrations (INFERENCE_DATABASE_URL)")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.command == "migrate":
        upgrade(MIGRATIONS, settings.database_url)
        print(f"migrated {settings.database_url.split('@')[-1]}")


if __name__ == "__main__":
    main()
