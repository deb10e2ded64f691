"""The AuthService gRPC servicer: registration, logins, token rotation, accounts and usage counts."""
import asyncio
import logging
from datetime import timedelta

import grpc
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from fer.v1 import auth_pb2, auth_pb2_grpc, common_pb2
from ferkit.db import as_utc, new_id, to_timestamp, utcnow
from services.auth.config import Settings
from services.auth.models import FailedLogin, RefreshToken, User
from services.auth.passwords import Hasher, weakness
from services.auth.tokens import AccessTokenIssuer, hash_refresh_token, new_refresh_token

log = logging.getLogger(__name__)

ROLES = {"user": auth_pb2.ROLE_USER, "admin": auth_pb2.ROLE_ADMIN}
MAX_DISPLAY_NAME = 100


def user_to_proto(user: User) -> auth_pb2.User:
    return auth_pb2.User(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=ROLES.get(user.role, auth_pb2.ROLE_USER),
        computations=user.computations,
        created_at=to_timestamp(user.created_at),
        updated_at=to_timestamp(user.updated_at),
    )


def normalise_email(email: str) -> str:
    """The canonical form the account is stored under; raises ValueError with the reason."""
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValueError(f"email is not valid: {exc}") from None


def clean_display_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise ValueError("display_name must not be empty")
    if len(name) > MAX_DISPLAY_NAME:
        raise ValueError(f"display_name must have at most {MAX_DISPLAY_NAME} characters")
    return name


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, settings: Settings, sessions: async_sessionmaker, hasher: Hasher, issuer: AccessTokenIssuer) -> None:
        self.settings = settings
        self.sessions = sessions
        self.hasher = hasher
        self.issuer = issuer
        # Verified when the email is unknown, so a miss costs as long as a wrong password.
        self._dummy_hash = hasher.hash("not-a-real-password-1")

    # --- accounts -----------------------------------------------------------------------------

    async def create_user(self, email: str, password: str, display_name: str, role: str = "user") -> User:
        """Validate and store a new account; raises ValueError (bad input) or LookupError (email taken)."""
        email = normalise_email(email)
        display_name = clean_display_name(display_name)
        reason = weakness(password, email)
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
        try:
            user = await self.create_user(request.email, request.password, request.display_name)
        except ValueError as exc:
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
        async with self.sessions() as session:
            return user_to_proto(await self._user_or_abort(session, request.user_id, context))

    async def UpdateUser(self, request, context):
        async with self.sessions() as session:
            user = await self._user_or_abort(session, request.user_id, context)
            try:
                if request.HasField("display_name"):
                    user.display_name = clean_display_name(request.display_name)
                if request.HasField("email"):
                    user.email = normalise_email(request.email)
                if request.HasField("new_password"):
                    reason = weakness(request.new_password, user.email)
                    if reason:
                        raise ValueError(reason)
            except ValueError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            if request.HasField("new_password"):
                if not await asyncio.to_thread(self.hasher.verify, user.password_hash, request.current_password):
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED, "the current password is wrong")
                user.password_hash = await asyncio.to_thread(self.hasher.hash, request.new_password)
                # A new password ends every session that the old one opened.
                await session.execute(
                    update(RefreshToken)
                    .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
                    .values(revoked_at=utcnow())
                )
            user.updated_at = utcnow()
            try:
                await session.commit()
            except IntegrityError:
                await context.abort(grpc.StatusCode.ALREADY_EXISTS, "an account with this email already exists")
            return user_to_proto(user)

    async def DeleteUser(self, request, context):
        async with self.sessions() as session:
            user = await self._user_or_abort(session, request.user_id, context)
            await session.delete(user)
            await session.commit()
        log.info("deleted user %s", request.user_id)
        return common_pb2.Empty()

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

    # --- logins and tokens --------------------------------------------------------------------

    async def _too_many_failures(self, session, email: str, address: str) -> str | None:
        since = utcnow() - timedelta(seconds=self.settings.failed_login_window_s)
        by_account = await session.scalar(
            select(func.count()).select_from(FailedLogin).where(FailedLogin.email == email, FailedLogin.at > since)
        )
        if by_account >= self.settings.max_failed_logins_per_account:
            return "too many failed logins for this account; try again later"
        if address:
            by_address = await session.scalar(
                select(func.count()).select_from(FailedLogin).where(FailedLogin.address == address, FailedLogin.at > since)
            )
            if by_address >= self.settings.max_failed_logins_per_address:
                return "too many failed logins from this address; try again later"
        return None

    async def _issue_pair(self, session, user: User, family_id: str) -> auth_pb2.TokenPair:
        refresh = new_refresh_token()
        session.add(
            RefreshToken(
                user_id=user.id,
                family_id=family_id,
                token_hash=hash_refresh_token(refresh),
                expires_at=utcnow() + timedelta(seconds=self.settings.refresh_token_ttl_s),
            )
        )
        return auth_pb2.TokenPair(
            access_token=self.issuer.issue(user.id, user.role),
            refresh_token=refresh,
            token_type="bearer",
            expires_in=self.issuer.ttl_s,
        )

    async def Authenticate(self, request, context):
        try:
            email = normalise_email(request.email)
        except ValueError:
            email = request.email.strip().lower()
        address = request.client_address[:64]
        async with self.sessions() as session:
            reason = await self._too_many_failures(session, email, address)
            if reason:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, reason)
            user = await session.scalar(select(User).where(User.email == email))
            ok = await asyncio.to_thread(
                self.hasher.verify, user.password_hash if user else self._dummy_hash, request.password
            )
            if not (user and ok):
                session.add(FailedLogin(email=email, address=address))
                await session.commit()
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong email or password")
            await session.execute(delete(FailedLogin).where(FailedLogin.email == email))
            pair = await self._issue_pair(session, user, family_id=new_id())
            await session.commit()
            return pair

    async def Refresh(self, request, context):
        token_hash = hash_refresh_token(request.refresh_token)
        async with self.sessions() as session:
            stored = await session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))
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
            user = await session.get(User, stored.user_id)
            pair = await self._issue_pair(session, user, family_id=stored.family_id)
            await session.commit()
            return pair

    async def _revoke_family(self, session, family_id: str) -> None:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )

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
