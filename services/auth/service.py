"""The AuthService gRPC servicer: registration, logins, sessions and token rotation, accounts and usage counts."""
import asyncio
import logging
from datetime import timedelta

import grpc
from sqlalchemy import and_, delete, exists, func, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import aliased

from fer.v1 import auth_pb2, auth_pb2_grpc, common_pb2
from ferkit.db import as_utc, is_id, new_id, to_timestamp, utcnow
from ferkit.paging import decode_cursor, encode_cursor
from services.auth.config import Settings
from services.auth.limits import Limits, Refusal
from services.auth.models import DeletedAccount, LoginAddress, RefreshToken, User
from services.auth.passwords import Hasher, weakness
from services.auth.tokens import AccessTokenIssuer, hash_refresh_token, new_refresh_token
from services.auth.validation import clean_display_name, has_control_characters, normalise_email

log = logging.getLogger(__name__)

ROLES = {"user": auth_pb2.ROLE_USER, "admin": auth_pb2.ROLE_ADMIN}
ROLE_NAMES = {number: name for name, number in ROLES.items()}
DISABLED = "this account is disabled; ask an administrator to enable it"
# What the columns hold: longer input is cut before it is counted or looked up.
MAX_EMAIL = User.__table__.c.email.type.length
MAX_ADDRESS = LoginAddress.__table__.c.address.type.length
# ListDeletedAccounts: page_size 0 means the default; larger than the most is refused.
DELETED_PAGE_DEFAULT = 100
DELETED_PAGE_MAX = 1000
# ListUsers: the same rule, with the gateway's page sizes.
USERS_PAGE_DEFAULT = 20
USERS_PAGE_MAX = 100


def user_to_proto(user: User) -> auth_pb2.User:
    return auth_pb2.User(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=ROLES.get(user.role, auth_pb2.ROLE_USER),
        computations=user.computations,
        created_at=to_timestamp(user.created_at),
        updated_at=to_timestamp(user.updated_at),
        disabled=user.disabled,
    )


async def refuse(context, refusal: Refusal) -> None:
    """RESOURCE_EXHAUSTED with how long to wait: the gateway answers 429 with Retry-After."""
    await context.abort(
        grpc.StatusCode.RESOURCE_EXHAUSTED, refusal.reason, trailing_metadata=(("retry-after", str(refusal.retry_after_s)),)
    )


def active_admin(user=User):
    """The clause "this account is an administrator and is not disabled"."""
    return and_(user.role == "admin", user.disabled.is_(False))


def session_is_open(session_id: str):
    """The clause "the user's session (refresh-token family) session_id has a token that is not revoked"."""
    return exists().where(
        RefreshToken.family_id == session_id, RefreshToken.user_id == User.id, RefreshToken.revoked_at.is_(None)
    )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, settings: Settings, sessions: async_sessionmaker, hasher: Hasher, issuer: AccessTokenIssuer) -> None:
        self.settings = settings
        self.sessions = sessions
        self.hasher = hasher
        self.issuer = issuer
        self.limits = Limits(settings, sessions)
        # Verified when the email is unknown, so a miss costs as long as a wrong password.
        self._dummy_hash = hasher.hash("not-a-real-password-1")

    # --- accounts -----------------------------------------------------------------------------

    async def create_user(self, email: str, password: str, display_name: str, role: str = "user") -> User:
        """Validate and store a new account; raises ValueError (bad input) or LookupError (email taken)."""
        email = normalise_email(email)
        display_name = clean_display_name(display_name)
        reason = await asyncio.to_thread(weakness, password, email, display_name)
        if reason:
            raise ValueError(reason)
        password_hash = await asyncio.to_thread(self.hasher.hash, password)
        user = User(email=email, display_name=display_name, password_hash=password_hash, role=role)
        async with self.sessions() as session:
            session.add(user)
            try:
                await session.commit()
            except IntegrityError:
                raise LookupError("an account with this email already exists") from None
        return user

    async def Register(self, request, context):
        address = request.client_address[:MAX_ADDRESS]
        refusal = await self.limits.take_registration(address)
        if refusal:
            await refuse(context, refusal)
        try:
            user = await self.create_user(request.email, request.password, request.display_name)
        except ValueError as exc:
            await self.limits.give_back_registration(address)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except LookupError as exc:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        log.info("registered user %s", user.id)
        return user_to_proto(user)

    async def _user_or_abort(self, session, user_id: str, context) -> User:
        user = await session.get(User, user_id) if user_id else None
        if user is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "user not found")
        return user

    async def GetUser(self, request, context):
        is_open = session_is_open(request.session_id) if request.session_id else true()
        async with self.sessions() as session:
            found = (await session.execute(select(User, is_open).where(User.id == request.user_id))).one_or_none()
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "user not found")
        user, is_open = found
        if user.disabled:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, DISABLED)
        if not is_open:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "this session has ended; please log in again")
        return user_to_proto(user)

    async def UpdateUser(self, request, context):
        async with self.sessions() as session:
            user = await self._user_or_abort(session, request.user_id, context)
            try:
                display_name = clean_display_name(request.display_name) if request.HasField("display_name") else None
                email = normalise_email(request.email) if request.HasField("email") else None
                if request.HasField("new_password"):
                    reason = await asyncio.to_thread(
                        weakness, request.new_password, email or user.email, display_name or user.display_name
                    )
                    if reason:
                        raise ValueError(reason)
            except ValueError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            # Who holds only a (stolen) access token must not take the account over.
            if email is not None or request.HasField("new_password"):
                address = request.client_address[:MAX_ADDRESS]
                if not await self._password_attempt(user, user.email, request.current_password, address, context):
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED, "the current password is wrong")
            if display_name is not None:
                user.display_name = display_name
            if email is not None:
                user.email = email
            if request.HasField("new_password"):
                user.password_hash = await asyncio.to_thread(self.hasher.hash, request.new_password)
                # A new password ends every other session at once (ASVS 3.3.3); the one that made the change goes on.
                await self._revoke_user_sessions(session, user.id, keep_family=request.session_id)
            user.updated_at = utcnow()
            try:
                await session.commit()
            except IntegrityError:
                await context.abort(grpc.StatusCode.ALREADY_EXISTS, "an account with this email already exists")
            return user_to_proto(user)

    async def DeleteUser(self, request, context):
        async with self.sessions() as session:
            deleted = await session.scalar(delete(User).where(User.id == request.user_id).returning(User.id))
            if deleted is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, "user not found")
            # In the same transaction: no account is gone without its tombstone, so its data is erased.
            session.add(DeletedAccount(user_id=deleted))
            await session.commit()
        log.info("deleted user %s", request.user_id)
        return common_pb2.Empty()

    async def ListDeletedAccounts(self, request, context):
        """Oldest first, keyset-paginated on (deleted_at, user_id); the token of the last one listed lets a
        caller ask later for only what is newer."""
        size = request.page_size or DELETED_PAGE_DEFAULT
        if not 0 < size <= DELETED_PAGE_MAX:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"page_size must be between 1 and {DELETED_PAGE_MAX}")
        settled = utcnow() - timedelta(seconds=self.settings.deleted_accounts_settle_s)
        query = select(DeletedAccount.deleted_at, DeletedAccount.user_id).where(DeletedAccount.deleted_at <= settled)
        if request.page_token:
            try:
                stamp, user_id = decode_cursor(request.page_token)
            except ValueError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            query = query.where(or_(DeletedAccount.deleted_at > stamp,
                                    and_(DeletedAccount.deleted_at == stamp, DeletedAccount.user_id > user_id)))
        async with self.sessions() as session:
            rows = (await session.execute(query.order_by(DeletedAccount.deleted_at, DeletedAccount.user_id).limit(size))).all()
        return auth_pb2.ListDeletedAccountsResponse(
            user_ids=[row.user_id for row in rows],
            next_page_token=encode_cursor(*rows[-1]) if rows else request.page_token,
        )

    async def RecordUsage(self, request, context):
        if not 0 < request.count <= 10_000:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "count must be between 1 and 10000")
        async with self.sessions() as session:
            # One UPDATE that returns the row: concurrent calls never lose an increment, and one statement
            # answers (this runs once per analysed photo).
            user = await session.scalar(
                update(User)
                .where(User.id == request.user_id)
                .values(computations=User.computations + request.count, updated_at=utcnow())
                .returning(User)
                .execution_options(populate_existing=True)
            )
            if user is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, "user not found")
            await session.commit()
            return user_to_proto(user)

    async def ListUsers(self, request, context):
        """Newest first, keyset-paginated on (created_at, id), like the results history."""
        size = request.page.page_size or USERS_PAGE_DEFAULT
        if not 0 < size <= USERS_PAGE_MAX:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"page_size must be between 1 and {USERS_PAGE_MAX}")
        text = request.query.strip()
        if has_control_characters(text) or len(text) > MAX_EMAIL:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"the search must have at most {MAX_EMAIL} characters and no control characters")
        # LIKE's wildcards in the search are escaped: "a_b" finds "a_b" only.
        matches = or_(User.email.icontains(text, autoescape=True), User.display_name.icontains(text, autoescape=True)) if text else true()
        query = select(User).where(matches)
        if request.page.page_token:
            try:
                stamp, user_id = decode_cursor(request.page.page_token)
            except ValueError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            query = query.where(or_(User.created_at < stamp, and_(User.created_at == stamp, User.id < user_id)))
        async with self.sessions() as session:
            rows = list(await session.scalars(query.order_by(User.created_at.desc(), User.id.desc()).limit(size + 1)))
            total = await session.scalar(select(func.count()).select_from(User).where(matches))
        more = len(rows) > size
        rows = rows[:size]
        return auth_pb2.ListUsersResponse(
            users=[user_to_proto(user) for user in rows],
            page=common_pb2.PageInfo(next_page_token=encode_cursor(rows[-1].created_at, rows[-1].id) if more else "", total=total),
        )

    async def AdminUpdateUser(self, request, context):
        """Role and disabled flag, never left without an active administrator. A change that could remove one
        (a demotion, a disabling) is one conditional UPDATE that re-counts the others in the database; on
        PostgreSQL it first locks the active administrators' rows, so concurrent such changes queue and each
        counts what the one before it left (SQLite has one writer at a time: the statement alone suffices)."""
        if request.HasField("role") and request.role not in ROLE_NAMES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "role must be user or admin")
        if not (request.HasField("role") or request.HasField("disabled")):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "nothing to change: set role or disabled")
        if not is_id(request.user_id):
            await context.abort(grpc.StatusCode.NOT_FOUND, "user not found")
        changes = {}
        if request.HasField("role"):
            changes["role"] = ROLE_NAMES[request.role]
        if request.HasField("disabled"):
            changes["disabled"] = request.disabled
        demoting = changes.get("role") == "user" or changes.get("disabled") is True
        change = update(User).where(User.id == request.user_id).values(**changes, updated_at=utcnow())
        if demoting:
            other = aliased(User)
            others = (
                select(func.count()).select_from(other).where(active_admin(other), other.id != request.user_id).scalar_subquery()
            )
            change = change.where(or_(~active_admin(), others > 0))
        async with self.sessions() as session:
            if demoting:
                await session.execute(select(User.id).where(active_admin()).order_by(User.id).with_for_update())
            user = await session.scalar(change.returning(User).execution_options(populate_existing=True))
            if user is None:
                if await session.get(User, request.user_id) is None:
                    await context.abort(grpc.StatusCode.NOT_FOUND, "user not found")
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "this is the last active administrator: make another account an administrator first",
                )
            if changes.get("disabled"):
                # Its refresh tokens die now; re-enabling does not bring its sessions back.
                await self._revoke_user_sessions(session, user.id)
            await session.commit()
        log.info("administrator %s changed user %s: %s", request.admin_id or "?", user.id, changes)
        return user_to_proto(user)

    # --- logins and tokens --------------------------------------------------------------------

    async def _password_attempt(self, user: User | None, email: str, password: str, address: str, context) -> bool:
        """Whether the password is the account's, checked under the login limits: RESOURCE_EXHAUSTED before
        the check when a limit is reached. A right one gives its place back and makes the address known."""
        async with self.sessions() as session:
            known = user is not None and await self.limits.is_known_address(session, user.id, address)
        refusal = await self.limits.take_login(email, address, known)
        if refusal:
            await refuse(context, refusal)
        ok = await asyncio.to_thread(self.hasher.verify, user.password_hash if user else self._dummy_hash, password)
        if not (user and ok):
            return False
        async with self.sessions() as session:
            await self.limits.give_back_login(session, email, address)
            if address:
                await self.limits.remember_address(session, user.id, address)
            await session.commit()
        return True

    async def _issue_pair(self, session, user: User, session_id: str) -> auth_pb2.TokenPair:
        """A new refresh token in the session (its family) and an access token that names the session."""
        refresh = new_refresh_token()
        session.add(
            RefreshToken(
                user_id=user.id,
                family_id=session_id,
                token_hash=hash_refresh_token(refresh),
                expires_at=utcnow() + timedelta(seconds=self.settings.refresh_token_ttl_s),
            )
        )
        return auth_pb2.TokenPair(
            access_token=self.issuer.issue(user.id, user.role, session_id),
            refresh_token=refresh,
            token_type="bearer",
            expires_in=self.issuer.ttl_s,
        )

    async def Authenticate(self, request, context):
        if has_control_characters(request.email) or has_control_characters(request.password):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "email and password must not contain control characters")
        try:
            email = normalise_email(request.email)
        except ValueError:
            email = request.email.strip().lower()[:MAX_EMAIL]
        async with self.sessions() as session:
            user = await session.scalar(select(User).where(User.email == email))
        if not await self._password_attempt(user, email, request.password, request.client_address[:MAX_ADDRESS], context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong email or password")
        async with self.sessions() as session:
            # Told only to who knows the password, so it reveals no more than a login does. On PostgreSQL the
            # row lock makes a concurrent disabling either come first (refused here) or revoke this session too.
            disabled = await session.scalar(select(User.disabled).where(User.id == user.id).with_for_update())
            if disabled is None:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong email or password")
            if disabled:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, DISABLED)
            pair = await self._issue_pair(session, user, session_id=new_id())
            await session.commit()
        return pair

    async def Refresh(self, request, context):
        token_hash = hash_refresh_token(request.refresh_token)
        async with self.sessions() as session:
            stored = await session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))
            user = await session.get(User, stored.user_id) if stored is not None else None
            if user is not None and user.disabled:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, DISABLED)
            if stored is None or stored.revoked_at is not None or as_utc(stored.expires_at) <= utcnow():
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "refresh token is invalid, expired or revoked")
            # Mark used in one conditional UPDATE so two concurrent refreshes cannot both win.
            claimed = await session.execute(
                update(RefreshToken)
                .where(RefreshToken.id == stored.id, RefreshToken.used_at.is_(None))
                .values(used_at=utcnow())
                .returning(RefreshToken.id)
            )
            if claimed.scalar_one_or_none() is None:
                # A rotated token came back: it was stolen or replayed. End the whole family.
                await self._revoke_family(session, stored.family_id)
                await session.commit()
                log.warning("refresh token reuse for user %s: family revoked", stored.user_id)
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "refresh token was already used; please log in again")
            pair = await self._issue_pair(session, user, session_id=stored.family_id)
            await session.commit()
            return pair

    async def _revoke_family(self, session, family_id: str) -> None:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )

    async def _revoke_user_sessions(self, session, user_id: str, keep_family: str | None = None) -> None:
        """Revoke every live refresh token of the user, but those of `keep_family` when given."""
        change = update(RefreshToken).where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        if keep_family is not None:
            change = change.where(RefreshToken.family_id != keep_family)
        await session.execute(change.values(revoked_at=utcnow()))

    async def Revoke(self, request, context):
        async with self.sessions() as session:
            stored = await session.scalar(
                select(RefreshToken).where(RefreshToken.token_hash == hash_refresh_token(request.refresh_token))
            )
            if stored is None:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "refresh token is invalid")
            await self._revoke_family(session, stored.family_id)
            await session.commit()
        return common_pb2.Empty()

    async def GetVerificationKey(self, request, context):
        return auth_pb2.VerificationKey(
            jwks_json=self.issuer.jwks_json(),
            issuer=self.issuer.issuer,
            audience=self.issuer.audience,
            algorithm="ES256",
        )
