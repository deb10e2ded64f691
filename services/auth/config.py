from pydantic_settings import SettingsConfigDict

from ferkit.config import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_", extra="ignore")

    service_name: str = "auth"
    grpc_port: int = 50051
    metrics_port: int = 9101
    database_url: str = "sqlite+aiosqlite:///var/auth.db"
    # PEM of the EC P-256 key that signs access tokens. Empty: a key is generated at start
    # (fine for one local process; production passes one from a Secret so every replica agrees).
    jwt_private_key: str = ""
    jwt_issuer: str = "fer-platform-auth"
    jwt_audience: str = "fer-platform"
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 14 * 24 * 3600
    # Login limits (docs/security.md, "Accounts, logins and sessions"). Failed logins allowed inside the
    # window per account and client address together, and per address over all accounts, before 429s.
    max_failed_logins_per_pair: int = 5
    max_failed_logins_per_address: int = 20
    failed_login_window_s: int = 900
    # Per account over all addresses: past this many failures each further attempt waits 2, 4, 8...
    # seconds after the last one, up to the cap; the count resets after its window without a failure.
    # Addresses the account logged in from lately are exempt.
    account_backoff_after: int = 20
    account_backoff_max_s: int = 600
    account_failure_window_s: int = 24 * 3600
    known_address_ttl_s: int = 90 * 24 * 3600
    # Registrations allowed per client address inside the window.
    max_registrations_per_address: int = 10
    registration_window_s: int = 3600
    # ListDeletedAccounts leaves tombstones younger than this for a later call: one written a moment before
    # another (or by a replica whose clock is behind) may commit after it, and must not land behind a cursor
    # already handed out.
    deleted_accounts_settle_s: float = 10.0
    # argon2id cost (OWASP's minimum recommendation: 19 MiB, 2 passes).
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19456
    # The first admin, created at start when both are set and the email is unknown.
    admin_email: str = ""
    admin_password: str = ""
