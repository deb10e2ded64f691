"""Who may try a password or register now: counters in the database, locked while an attempt takes its place.

Failed logins are limited three ways (the numbers are settings, in config.py; docs/security.md tells why):
- per account and address together: guessing one account from one place stops there;
- per address over all accounts: one place spraying many accounts stops there;
- per account over all addresses, by exponential back-off past a threshold (the count resets after a
  long window without failures): many places together get few guesses, yet cannot lock the owner out,
  as the addresses the account logged in from lately are exempt from the back-off.
An attempt takes its place (the counters go up) before the password is checked, each counter's row locked
(the upsert locks it; writers queue), so parallel attempts cannot all get under a limit; a successful
login gives its place back. Registrations are limited per address the same way.
"""
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ferkit.db import as_utc, utcnow
from services.auth.config import Settings
from services.auth.models import LoginAddress, Throttle

ACCOUNT, ADDRESS, PAIR, REGISTRATION = "account", "address", "pair", "register"
MAX_EXPONENT = 30  # 2**30 s is past any sensible cap; the count itself may grow further
REASONS = {
    ACCOUNT: "too many failed logins for this account; try again later",
    ADDRESS: "too many failed logins from this address; try again later",
    PAIR: "too many failed logins for this account from this address; try again later",
    REGISTRATION: "too many new accounts from this address; try again later",
}


@dataclass(frozen=True)
class Refusal:
    reason: str
    retry_after_s: int


@dataclass(frozen=True)
class _Counter:
    scope: str
    subject: str
    count: int
    window_start: datetime
    last_at: datetime


def backoff_s(failures: int, settings: Settings) -> float:
    """How long after the last failure the account's next attempt must wait (0 below the threshold)."""
    beyond = failures - settings.account_backoff_after
    if beyond < 0:
        return 0
    return min(2 ** min(beyond + 1, MAX_EXPONENT), settings.account_backoff_max_s)


class Limits:
    """Reads its settings at each call (a test may change them on the running service)."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker) -> None:
        self.settings = settings
        self.sessions = sessions

    async def take_login(self, email: str, address: str, known_address: bool) -> Refusal | None:
        """Counts a login attempt as failed, unless a limit refuses it first (then nothing is counted)."""
        counters = [(PAIR, f"{address} {email}"), (ACCOUNT, email)] + ([(ADDRESS, address)] if address else [])
        return await self._take(counters, exempt=frozenset({ACCOUNT}) if known_address else frozenset())

    async def give_back_login(self, session: AsyncSession, email: str, address: str) -> None:
        """After the right password: the pair starts afresh, the other counters drop this attempt (a success
        must not wipe what others failed). Runs in the caller's transaction."""
        for scope, subject in sorted([(ACCOUNT, email), (ADDRESS, address), (PAIR, f"{address} {email}")]):
            counter = Throttle.scope == scope, Throttle.subject == subject, Throttle.count > 0
            await session.execute(update(Throttle).where(*counter).values(count=0 if scope == PAIR else Throttle.count - 1))

    async def take_registration(self, address: str) -> Refusal | None:
        return await self._take([(REGISTRATION, address)]) if address else None

    async def give_back_registration(self, address: str) -> None:
        """A registration refused for its input does not count."""
        if address:
            async with self.sessions() as session:
                await session.execute(
                    update(Throttle)
                    .where(Throttle.scope == REGISTRATION, Throttle.subject == address, Throttle.count > 0)
                    .values(count=Throttle.count - 1)
                )
                await session.commit()

    async def is_known_address(self, session: AsyncSession, user_id: str, address: str) -> bool:
        since = utcnow() - timedelta(seconds=self.settings.known_address_ttl_s)
        last = await session.scalar(
            select(LoginAddress.last_login_at).where(LoginAddress.user_id == user_id, LoginAddress.address == address)
        )
        return last is not None and as_utc(last) > since

    async def remember_address(self, session: AsyncSession, user_id: str, address: str) -> None:
        now = utcnow()
        insert = _dialect_insert(session)(LoginAddress).values(user_id=user_id, address=address, last_login_at=now)
        await session.execute(
            insert.on_conflict_do_update(index_elements=[LoginAddress.user_id, LoginAddress.address], set_={"last_login_at": now})
        )

    async def _take(self, counters: list[tuple[str, str]], exempt: frozenset[str] = frozenset()) -> Refusal | None:
        async with self.sessions() as session:
            # Always the same order, so two attempts sharing counters never wait on each other in a circle.
            locked = [await self._lock(session, scope, subject) for scope, subject in sorted(counters)]
            now = utcnow()  # after the locks: the attempts that held them wrote earlier times
            taken = [self._current(counter, now) for counter in locked]
            for counter in taken:
                refusal = None if counter.scope in exempt else self._refusal(counter, now)
                if refusal:
                    await session.rollback()
                    return refusal
            for counter in taken:
                await session.execute(
                    update(Throttle)
                    .where(Throttle.scope == counter.scope, Throttle.subject == counter.subject)
                    .values(count=counter.count + 1, window_start=counter.window_start, last_at=now)
                )
            await session.commit()
        return None

    async def _lock(self, session: AsyncSession, scope: str, subject: str) -> _Counter:
        """The counter, its row created when new (empty) and locked either way."""
        now = utcnow()
        insert = _dialect_insert(session)(Throttle).values(scope=scope, subject=subject, count=0, window_start=now, last_at=now)
        row = (
            await session.execute(
                insert.on_conflict_do_update(index_elements=[Throttle.scope, Throttle.subject], set_={"count": Throttle.count})
                .returning(Throttle.count, Throttle.window_start, Throttle.last_at)
            )
        ).one()
        return _Counter(scope, subject, row.count, as_utc(row.window_start), as_utc(row.last_at))

    def _current(self, counter: _Counter, now: datetime) -> _Counter:
        """The counter as it stands now: an empty or expired one starts afresh (the account's expires a
        window after its last failure, so pausing does not buy a fresh allowance; the others a window after
        they began)."""
        expiry_from = counter.last_at if counter.scope == ACCOUNT else counter.window_start
        if counter.count == 0 or now - expiry_from >= timedelta(seconds=self._window_s(counter.scope)):
            return _Counter(counter.scope, counter.subject, 0, now, now)
        return counter

    def _window_s(self, scope: str) -> int:
        return {
            ACCOUNT: self.settings.account_failure_window_s,
            REGISTRATION: self.settings.registration_window_s,
        }.get(scope, self.settings.failed_login_window_s)

    def _refusal(self, counter: _Counter, now: datetime) -> Refusal | None:
        """None while the counter is under its limit; else why, and how long until an attempt may come."""
        settings = self.settings
        if counter.scope == ACCOUNT:
            wait = backoff_s(counter.count, settings)
            until = counter.last_at + timedelta(seconds=wait) if wait else now
        else:
            limit = {
                PAIR: settings.max_failed_logins_per_pair,
                ADDRESS: settings.max_failed_logins_per_address,
                REGISTRATION: settings.max_registrations_per_address,
            }[counter.scope]
            until = counter.window_start + timedelta(seconds=self._window_s(counter.scope)) if counter.count >= limit else now
        if until <= now:
            return None
        return Refusal(REASONS[counter.scope], max(1, math.ceil((until - now).total_seconds())))


def _dialect_insert(session: AsyncSession):
    """INSERT ... ON CONFLICT exists in both databases, under each dialect's own insert()."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
