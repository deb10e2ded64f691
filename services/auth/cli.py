"""Operator commands: `python -m services.auth.cli migrate` and `... create-admin --email E`."""
import argparse
import asyncio
import getpass
import os
from pathlib import Path

from ferkit.db import upgrade
from services.auth.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.auth.cli")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply the database migrations (AUTH_DATABASE_URL)")
    admin = commands.add_parser("create-admin", help="create an admin account (or promote an existing one)")
    admin.add_argument("--email", required=True)
    admin.add_argument("--display-name", default="Administrator")
    args = parser.parse_args(argv)
    settings = Settings()

    if args.command == "migrate":
        upgrade(MIGRATIONS, settings.database_url)
        print(f"migrated {settings.database_url.split('@')[-1]}")
    elif args.command == "create-admin":
        from services.auth.server import build, ensure_admin

        password = os.environ.get("AUTH_ADMIN_PASSWORD") or getpass.getpass("password for the admin: ")
        _, servicer = build(settings)

        async def create() -> None:
            try:
                user = await ensure_admin(servicer, args.email, password, args.display_name)
                print(f"admin {user.email} ({user.id}) is ready")
            finally:
                await servicer.engine.dispose()

        try:
            asyncio.run(create())
        except ValueError as exc:
            raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
