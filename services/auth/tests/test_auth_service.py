"""AuthService over real gRPC, on PostgreSQL and on SQLite."""
import asyncio
import base64
import uuid
from collections import Counter

import grpc
import pytest

from fer.v1 import auth_pb2, auth_pb2_grpc, common_pb2
from ferkit.grpc_client import open_channel
from services.auth.limits import backoff_s
from tests.fixtures.auth import changed_settings, session_of, unique_email

PASSWORD = "Correct-horse-9"


@pytest.fixture(scope="module")
async def stub(auth_address):
    channel = open_channel(auth_address)
    yield auth_pb2_grpc.AuthServiceStub(channel)
    await channel.close()


async def register(stub, email=None, password=PASSWORD, name="Grace"):
    return await stub.Register(auth_pb2.RegisterRequest(email=email or unique_email(), password=password, display_name=name))


async def login(stub, email, password=PASSWORD, address="10.0.0.1"):
    return await stub.Authenticate(auth_pb2.AuthenticateRequest(email=email, password=password, client_address=address))


def in_session(stub, user, session_id):
    """GetUser as the gateway calls it for a request with an access token of that session."""
    return stub.GetUser(auth_pb2.GetUserRequest(user_id=user.id, session_id=session_id))


async def expect_code(code, call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value


def retry_after(error: grpc.aio.AioRpcError) -> int:
    return int(dict(error.trailing_metadata())["retry-after"])


async def test_register_normalises_and_stores(stub):
    email = unique_email().upper()
    user = await register(stub, email=email, name="  Grace   Hopper ")
    assert user.email == email.lower()
    assert user.display_name == "Grace Hopper"
    assert user.role == auth_pb2.ROLE_USER and user.computations == 0
    assert (await stub.GetUser(auth_pb2.GetUserRequest(user_id=user.id))).email == email.lower()


@pytest.mark.parametrize(
    ("email", "password", "name", "reason"),
    [
        ("not-an-email", PASSWORD, "X", "email"),
        ("a@b", PASSWORD, "X", "email"),
        (None, "", "X", "empty"),
        (None, "short1", "X", "at least 8"),
        (None, "Passw0rd!", "X", "too easy to guess"),
        (None, "Summer2024", "X", "too easy to guess"),
        (None, "qwertyuiop1", "X", "too easy to guess"),
        (None, " " * 8 + "1", "X", "too easy to guess"),
        (None, "Correct-horse\x009", "X", "control characters"),
        ("nul\x00@example.com", PASSWORD, "X", "email"),
        (None, PASSWORD, "Ada\x00", "control characters"),
        (None, "correct horse battery staple", "X", None),  # acceptable: length over composition
        (None, PASSWORD, "   ", "display_name"),
    ],
)
async def test_register_validation(stub, email, password, name, reason):
    request = auth_pb2.RegisterRequest(email=email or unique_email(), password=password, display_name=name)
    if reason is None:
        assert (await stub.Register(request)).id
        return
    error = await expect_code(grpc.StatusCode.INVALID_ARGUMENT, stub.Register(request))
    assert reason in error.details()


async def test_duplicate_email_is_refused_and_keeps_the_first_account(stub):
    email = unique_email()
    first = await register(stub, email=email, name="First")
    await expect_code(grpc.StatusCode.ALREADY_EXISTS, register(stub, email=email.upper(), password="Other-pass-77", name="Second"))
    assert (await stub.GetUser(auth_pb2.GetUserRequest(user_id=first.id))).display_name == "First"
    assert (await login(stub, email)).access_token  # the first password still works


async def test_failures_from_one_address_stop_that_address_not_the_owner(stub, auth_settings):
    email = unique_email()
    await register(stub, email=email)
    for _ in range(auth_settings.max_failed_logins_per_pair):
        await expect_code(grpc.StatusCode.UNAUTHENTICATED, login(stub, email, "Wrong-pass-1", address="203.0.113.5"))
    # That address is stopped, even with the right password, and told how long to wait...
    error = await expect_code(grpc.StatusCode.RESOURCE_EXHAUSTED, login(stub, email, address="203.0.113.5"))
    assert "too many failed logins" in error.details()
    assert 0 < retry_after(error) <= auth_settings.failed_login_window_s
    # ...but the attacker holds no lockout button: the owner logs in from elsewhere.
    assert (await login(stub, email, address="198.51.100.20")).access_token


async def test_strangers_back_off_while_the_owner_gets_in_from_a_known_address(auth_service, stub):
    with changed_settings(auth_service.settings, account_backoff_after=4):
        email = unique_email()
        await register(stub, email=email)
        assert (await login(stub, email, address="10.1.1.1")).access_token  # the owner's usual address
        for n in range(4):  # many addresses, one guess each: under every per-address limit
            await expect_code(grpc.StatusCode.UNAUTHENTICATED, login(stub, email, "Wrong-pass-1", address=f"203.0.113.{n + 10}"))
        # Past the threshold a new address must wait (2 s, then 4, 8...), even with the right password...
        error = await expect_code(grpc.StatusCode.RESOURCE_EXHAUSTED, login(stub, email, address="203.0.113.99"))
        assert "too many failed logins for this account" in error.details() and 1 <= retry_after(error) <= 2
        # ...while the owner, from the usual address with the right password, gets in at once,
        assert (await login(stub, email, address="10.1.1.1")).access_token
        # and that success does not wipe what the strangers failed.
        await expect_code(grpc.StatusCode.RESOURCE_EXHAUSTED, login(stub, email, "Wrong-pass-1", address="203.0.113.98"))


def test_account_backoff_doubles_up_to_its_cap(auth_settings):
    after = auth_settings.account_backoff_after
    waits = [backoff_s(failures, auth_settings) for failures in range(after - 1, after + 12)]
    assert waits == [0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600, 600]
    assert backoff_s(10**6, auth_settings) == auth_settings.account_backoff_max_s


async def test_parallel_wrong_passwords_cannot_all_get_under_the_limit(auth_service, stub, auth_settings, monkeypatch):
    email = unique_email()
    await register(stub, email=email)
    checked = []
    verify = auth_service.hasher.verify
    monkeypatch.setattr(auth_service.hasher, "verify", lambda digest, password: checked.append(password) or verify(digest, password))
    results = await asyncio.gather(
        *(login(stub, email, "Wrong-pass-1", address="203.0.113.77") for _ in range(20)), return_exceptions=True
    )
    limit = auth_settings.max_failed_logins_per_pair
    assert Counter(result.code() for result in results) == {
        grpc.StatusCode.UNAUTHENTICATED: limit,
        grpc.StatusCode.RESOURCE_EXHAUSTED: 20 - limit,
    }
    assert len(checked) == limit, "only the attempts under the limit reach the password check"


async def test_registrations_are_limited_per_address(auth_service, stub):
    def request(address, password=PASSWORD):
        return auth_pb2.RegisterRequest(email=unique_email(), password=password, display_name="Bot", client_address=address)

    with changed_settings(auth_service.settings, max_registrations_per_address=3) as settings:
        address = "203.0.113.200"
        # Refused input does not use the allowance up.
        await expect_code(grpc.StatusCode.INVALID_ARGUMENT, stub.Register(request(address, "Summer2024")))
        for _ in range(3):
            assert (await stub.Register(request(address))).id
        error = await expect_code(grpc.StatusCode.RESOURCE_EXHAUSTED, stub.Register(request(address)))
        assert "too many new accounts" in error.details()
        assert 0 < retry_after(error) <= settings.registration_window_s
        assert (await stub.Register(request("203.0.113.201"))).id


async def test_control_characters_in_a_login_are_invalid_not_a_database_error(stub):
    email = unique_email()
    await register(stub, email=email)
    for bad_email, password in [(email + "\x00", PASSWORD), (email, PASSWORD + "\x00"), ("\x00", "\x00")]:
        error = await expect_code(grpc.StatusCode.INVALID_ARGUMENT, login(stub, bad_email, password))
        assert "control characters" in error.details()


async def test_unknown_email_fails_like_a_wrong_password(stub):
    error = await expect_code(grpc.StatusCode.UNAUTHENTICATED, login(stub, unique_email()))
    assert error.details() == "wrong email or password"


async def test_lockout_per_address(auth_service, stub):
    limit = 3
    auth_service.settings.max_failed_logins_per_address, saved = limit, auth_service.settings.max_failed_logins_per_address
    try:
        address = f"192.0.2.{id(stub) % 250}"
        victim = unique_email()
        await register(stub, email=victim)
        for _ in range(limit):  # different accounts, same address
            await expect_code(grpc.StatusCode.UNAUTHENTICATED, login(stub, unique_email(), address=address))
        await expect_code(grpc.StatusCode.RESOURCE_EXHAUSTED, login(stub, victim, address=address))
        assert (await login(stub, victim, address="198.51.100.7")).access_token  # other addresses are unaffected
    finally:
        auth_service.settings.max_failed_logins_per_address = saved


async def test_refresh_rotates_and_reuse_revokes_the_family(stub):
    email = unique_email()
    await register(stub, email=email)
    first = await login(stub, email)
    second = await stub.Refresh(auth_pb2.RefreshRequest(refresh_token=first.refresh_token))
    assert second.refresh_token != first.refresh_token and second.access_token
    # The rotated token comes back (stolen?): refused, and the legitimate newer token dies with it.
    await expect_code(grpc.StatusCode.UNAUTHENTICATED, stub.Refresh(auth_pb2.RefreshRequest(refresh_token=first.refresh_token)))
    await expect_code(grpc.StatusCode.UNAUTHENTICATED, stub.Refresh(auth_pb2.RefreshRequest(refresh_token=second.refresh_token)))
    # Another login is a separate family and still works.
    other = await login(stub, email)
    assert (await stub.Refresh(auth_pb2.RefreshRequest(refresh_token=other.refresh_token))).access_token


async def test_concurrent_refresh_has_one_winner(stub):
    email = unique_email()
    await register(stub, email=email)
    pair = await login(stub, email)
    results = await asyncio.gather(
        *(stub.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token)) for _ in range(4)), return_exceptions=True
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1


async def test_a_session_ends_at_once_on_logout_and_on_refresh_reuse(stub):
    email = unique_email()
    user = await register(stub, email=email)
    first = await login(stub, email)
    assert (await in_session(stub, user, session_of(first.access_token))).id == user.id
    await stub.Revoke(auth_pb2.RevokeRequest(refresh_token=first.refresh_token))
    error = await expect_code(grpc.StatusCode.UNAUTHENTICATED, in_session(stub, user, session_of(first.access_token)))
    assert "session has ended" in error.details()

    second = await login(stub, email)
    rotated = await stub.Refresh(auth_pb2.RefreshRequest(refresh_token=second.refresh_token))
    # A refresh stays in its session.
    assert session_of(rotated.access_token) == session_of(second.access_token) != session_of(first.access_token)
    assert (await in_session(stub, user, session_of(rotated.access_token))).id == user.id
    await expect_code(grpc.StatusCode.UNAUTHENTICATED, stub.Refresh(auth_pb2.RefreshRequest(refresh_token=second.refresh_token)))
    await expect_code(grpc.StatusCode.UNAUTHENTICATED, in_session(stub, user, session_of(rotated.access_token)))

    # Unknown sessions, and other accounts' sessions, are refused; without a session GetUser answers
    # (services calling for their own reasons).
    other_email = unique_email()
    await register(stub, email=other_email)
    for foreign in ("no-such-session", session_of((await login(stub, other_email)).access_token)):
        await expect_code(grpc.StatusCode.UNAUTHENTICATED, in_session(stub, user, foreign))
    assert (await stub.GetUser(auth_pb2.GetUserRequest(user_id=user.id))).id == user.id


async def test_revoke_logs_out(stub):
    email = unique_email()
    await register(stub, email=email)
    pair = await login(stub, email)
    await stub.Revoke(auth_pb2.RevokeRequest(refresh_token=pair.refresh_token))
    await expect_code(grpc.StatusCode.UNAUTHENTICATED, stub.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token)))
    await expect_code(grpc.StatusCode.UNAUTHENTICATED, stub.Revoke(auth_pb2.RevokeRequest(refresh_token="garbage")))


async def test_password_change_needs_the_current_password(stub):
    email = unique_email()
    user = await register(stub, email=email)
    pair = await login(stub, email)
    current = await login(stub, email)  # the session that changes the password
    change_session = session_of(current.access_token)
    change = auth_pb2.UpdateUserRequest(
        user_id=user.id, new_password="New-secret-42", current_password="Wrong-pass-1", session_id=change_session
    )
    await expect_code(grpc.StatusCode.PERMISSION_DENIED, stub.UpdateUser(change))
    assert (await login(stub, email)).access_token  # nothing changed
    change.current_password = PASSWORD
    await stub.UpdateUser(change)
    await expect_code(grpc.StatusCode.UNAUTHENTICATED, login(stub, email))
    assert (await login(stub, email, "New-secret-42")).access_token
    # Every other session opened with the old password ends at once; the one that made the change goes on.
    await expect_code(grpc.StatusCode.UNAUTHENTICATED, stub.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token)))
    await expect_code(grpc.StatusCode.UNAUTHENTICATED, in_session(stub, user, session_of(pair.access_token)))
    assert (await in_session(stub, user, change_session)).id == user.id
    assert (await stub.Refresh(auth_pb2.RefreshRequest(refresh_token=current.refresh_token))).access_token


async def test_email_change_needs_the_current_password(stub):
    email, new_email = unique_email(), unique_email()
    user = await register(stub, email=email)
    for password in ("", "Wrong-pass-1"):
        change = auth_pb2.UpdateUserRequest(user_id=user.id, email=new_email, current_password=password)
        await expect_code(grpc.StatusCode.PERMISSION_DENIED, stub.UpdateUser(change))
    assert (await stub.GetUser(auth_pb2.GetUserRequest(user_id=user.id))).email == email
    change = auth_pb2.UpdateUserRequest(user_id=user.id, email=new_email, current_password=PASSWORD)
    assert (await stub.UpdateUser(change)).email == new_email
    for bad in ({"email": "nul\x00@example.com"}, {"display_name": "Ada\x00"}):
        change = auth_pb2.UpdateUserRequest(user_id=user.id, current_password=PASSWORD, **bad)
        await expect_code(grpc.StatusCode.INVALID_ARGUMENT, stub.UpdateUser(change))


async def test_current_password_guesses_count_as_failed_logins(stub, auth_settings):
    email = unique_email()
    user = await register(stub, email=email)

    def change(password):
        return stub.UpdateUser(
            auth_pb2.UpdateUserRequest(
                user_id=user.id, new_password="New-secret-42", current_password=password, client_address="203.0.113.66"
            )
        )

    for _ in range(auth_settings.max_failed_logins_per_pair):
        await expect_code(grpc.StatusCode.PERMISSION_DENIED, change("Wrong-pass-1"))
    await expect_code(grpc.StatusCode.RESOURCE_EXHAUSTED, change(PASSWORD))


async def test_record_usage_is_atomic(stub):
    user = await register(stub)
    await asyncio.gather(*(stub.RecordUsage(auth_pb2.RecordUsageRequest(user_id=user.id, count=1)) for _ in range(25)))
    assert (await stub.GetUser(auth_pb2.GetUserRequest(user_id=user.id))).computations == 25
    await expect_code(grpc.StatusCode.INVALID_ARGUMENT, stub.RecordUsage(auth_pb2.RecordUsageRequest(user_id=user.id, count=0)))
    await expect_code(grpc.StatusCode.NOT_FOUND, stub.RecordUsage(auth_pb2.RecordUsageRequest(user_id="missing", count=1)))


async def test_delete_user(stub):
    user = await register(stub)
    await stub.DeleteUser(auth_pb2.GetUserRequest(user_id=user.id))
    await expect_code(grpc.StatusCode.NOT_FOUND, stub.GetUser(auth_pb2.GetUserRequest(user_id=user.id)))


async def list_deleted(stub, page_token: str = "", page_size: int = 0) -> auth_pb2.ListDeletedAccountsResponse:
    return await stub.ListDeletedAccounts(auth_pb2.ListDeletedAccountsRequest(page_token=page_token, page_size=page_size))


async def newest_cursor(stub) -> str:
    """The token after every tombstone so far (other tests delete accounts too)."""
    token = ""
    while True:
        page = await list_deleted(stub, token, 1000)
        token = page.next_page_token
        if len(page.user_ids) < 1000:
            return token


async def test_deleted_accounts_are_listed_in_pages_and_live_ones_never(stub):
    start = await newest_cursor(stub)
    live = await register(stub)
    gone = [await register(stub) for _ in range(5)]
    for user in gone:
        await stub.DeleteUser(auth_pb2.GetUserRequest(user_id=user.id))
    # An unknown account, or one deleted twice, gets no tombstone: absence is never taken for deletion.
    await expect_code(grpc.StatusCode.NOT_FOUND, stub.DeleteUser(auth_pb2.GetUserRequest(user_id=str(uuid.uuid4()))))
    await expect_code(grpc.StatusCode.NOT_FOUND, stub.DeleteUser(auth_pb2.GetUserRequest(user_id=gone[0].id)))

    listed, token, sizes = [], start, []
    for _ in range(3):
        page = await list_deleted(stub, token, 2)
        listed += page.user_ids
        sizes.append(len(page.user_ids))
        token = page.next_page_token
    assert listed == [user.id for user in gone] and sizes == [2, 2, 1]
    # At the end the token stays where it is; kept, it gives only what is deleted later.
    assert (await list_deleted(stub, token, 2)) == auth_pb2.ListDeletedAccountsResponse(next_page_token=token)
    later = await register(stub)
    await stub.DeleteUser(auth_pb2.GetUserRequest(user_id=later.id))
    assert list((await list_deleted(stub, token)).user_ids) == [later.id]

    everyone, token = [], ""
    while True:
        page = await list_deleted(stub, token, 3)
        everyone += page.user_ids
        token = page.next_page_token
        if len(page.user_ids) < 3:
            break
    assert len(everyone) == len(set(everyone)) and {user.id for user in [*gone, later]} <= set(everyone)
    assert live.id not in everyone
    assert (await stub.GetUser(auth_pb2.GetUserRequest(user_id=live.id))).id == live.id


async def test_fresh_tombstones_wait_to_settle_and_bad_pages_are_refused(stub, auth_service):
    token = await newest_cursor(stub)
    user = await register(stub)
    await stub.DeleteUser(auth_pb2.GetUserRequest(user_id=user.id))
    with changed_settings(auth_service.settings, deleted_accounts_settle_s=60):
        assert (await list_deleted(stub, token)) == auth_pb2.ListDeletedAccountsResponse(next_page_token=token)
    assert list((await list_deleted(stub, token)).user_ids) == [user.id]
    forged = base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|x\x00").decode()
    for bad in ("not a token!", forged):
        await expect_code(grpc.StatusCode.INVALID_ARGUMENT, list_deleted(stub, bad))
    await expect_code(grpc.StatusCode.INVALID_ARGUMENT, list_deleted(stub, "", 1001))


async def test_verification_key_is_public_only(stub):
    key = await stub.GetVerificationKey(common_pb2.Empty())
    assert key.algorithm == "ES256" and '"kty": "EC"' in key.jwks_json
    assert '"d"' not in key.jwks_json  # the private scalar never leaves the service


async def test_admin_bootstrap(auth_service):
    from services.auth.server import ensure_admin

    email = unique_email("admin")
    admin = await ensure_admin(auth_service, email, PASSWORD)
    assert admin.role == "admin"
    again = await ensure_admin(auth_service, email, PASSWORD)
    assert again.id == admin.id


def set_account(stub, user_id: str, **changes):
    """AdminUpdateUser as the gateway calls it for an administrator."""
    return stub.AdminUpdateUser(auth_pb2.AdminUpdateUserRequest(user_id=user_id, admin_id="test-admin", **changes))


async def test_a_disabled_account_is_refused_everywhere_until_enabled(stub):
    email = unique_email()
    user = await register(stub, email=email)
    pair = await login(stub, email)
    assert not (await in_session(stub, user, session_of(pair.access_token))).disabled
    assert (await set_account(stub, user.id, disabled=True)).disabled

    # Its access tokens (the gateway asks GetUser on every request) and refresh tokens stop at once.
    for call in (in_session(stub, user, session_of(pair.access_token)), stub.GetUser(auth_pb2.GetUserRequest(user_id=user.id)),
                 stub.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token))):
        error = await expect_code(grpc.StatusCode.UNAUTHENTICATED, call)
        assert "this account is disabled" in error.details()
    # A wrong password gets the usual answer: only who knows the password learns the account is disabled.
    error = await expect_code(grpc.StatusCode.UNAUTHENTICATED, login(stub, email, "Wrong-pass-1"))
    assert error.details() == "wrong email or password"
    error = await expect_code(grpc.StatusCode.PERMISSION_DENIED, login(stub, email))
    assert "this account is disabled" in error.details()

    # Enabled again, it logs in; the sessions that disabling ended stay ended.
    assert not (await set_account(stub, user.id, disabled=False)).disabled
    fresh = await login(stub, email)
    assert (await in_session(stub, user, session_of(fresh.access_token))).id == user.id
    await expect_code(grpc.StatusCode.UNAUTHENTICATED, in_session(stub, user, session_of(pair.access_token)))
    await expect_code(grpc.StatusCode.UNAUTHENTICATED, stub.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token)))


async def test_an_administrator_changes_roles_and_bad_changes_are_refused(stub):
    first, second = await register(stub), await register(stub)
    assert (await set_account(stub, first.id, role=auth_pb2.ROLE_ADMIN)).role == auth_pb2.ROLE_ADMIN
    assert (await set_account(stub, second.id, role=auth_pb2.ROLE_ADMIN)).role == auth_pb2.ROLE_ADMIN
    demoted = await set_account(stub, first.id, role=auth_pb2.ROLE_USER)  # another administrator is left
    assert demoted.role == auth_pb2.ROLE_USER
    assert (await stub.GetUser(auth_pb2.GetUserRequest(user_id=first.id))).role == auth_pb2.ROLE_USER

    for user_id in (str(uuid.uuid4()), "not-an-id", "nul\x00"):
        await expect_code(grpc.StatusCode.NOT_FOUND, set_account(stub, user_id, disabled=True))
    await expect_code(grpc.StatusCode.INVALID_ARGUMENT, set_account(stub, first.id, role=auth_pb2.ROLE_UNSPECIFIED))
    await expect_code(grpc.StatusCode.INVALID_ARGUMENT, set_account(stub, first.id))
    # The account's own UpdateUser has no role or disabled field to set.
    assert {"role", "disabled"}.isdisjoint(auth_pb2.UpdateUserRequest.DESCRIPTOR.fields_by_name)


async def test_users_are_searched_in_any_case_and_paged_newest_first(stub):
    marker = uuid.uuid4().hex[:8]
    users = [await register(stub, email=unique_email(f"pg{marker}"), name=f"Tester {marker} {n}") for n in range(3)]
    other = await register(stub, name=f"Zed {marker.upper()}")

    async def search(query: str, page_size: int = 0, page_token: str = ""):
        page = common_pb2.PageRequest(page_size=page_size, page_token=page_token)
        return await stub.ListUsers(auth_pb2.ListUsersRequest(query=query, page=page))

    by_email = await search(f"PG{marker.upper()}")  # part of the emails, in another case
    assert [u.id for u in by_email.users] == [u.id for u in reversed(users)] and by_email.page.total == 3
    by_name = await search(f"  {marker.upper()} ")  # the display names, whatever the case
    assert [u.id for u in by_name.users] == [other.id, *(u.id for u in reversed(users))]

    first = await search(marker, page_size=3)
    assert len(first.users) == 3 and first.page.next_page_token and first.page.total == 4
    rest = await search(marker, page_size=3, page_token=first.page.next_page_token)
    assert [u.id for u in rest.users] == [users[0].id] and rest.page.next_page_token == ""

    assert (await search(f"%{marker}")).page.total == 0  # LIKE's wildcards are plain characters here
    everyone = await search("", page_size=100)
    assert everyone.page.total >= 4 and len(everyone.users) <= 100
    for bad in (search("", page_token="not a token!"), search("", page_size=101), search("nul\x00"), search("x" * 321)):
        await expect_code(grpc.StatusCode.INVALID_ARGUMENT, bad)


async def test_create_admin_enables_a_disabled_account(auth_service, stub):
    from services.auth.server import ensure_admin

    email = unique_email("admin")
    kept = await ensure_admin(auth_service, unique_email("admin"), PASSWORD)  # so disabling leaves one
    admin = await ensure_admin(auth_service, email, PASSWORD)
    assert (await set_account(stub, admin.id, disabled=True)).disabled
    await expect_code(grpc.StatusCode.PERMISSION_DENIED, login(stub, email))
    await ensure_admin(auth_service, email, PASSWORD)  # the operator's way back in
    assert (await login(stub, email)).access_token
    assert kept.role == "admin"
