"""AuthService over real gRPC, on PostgreSQL and on SQLite."""
import asyncio

import grpc
import pytest

from fer.v1 import auth_pb2, auth_pb2_grpc, common_pb2
from ferkit.grpc_client import open_channel
from tests.fixtures.auth import unique_email

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


async def expect_code(code, call):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value.details()


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
        (None, "alllowercaseletters", "X", "mix"),
        (None, "Tulips4ever", "X", None),  # acceptable: proves the rule is not just "reject everything"
        (None, PASSWORD, "   ", "display_name"),
    ],
)
async def test_register_validation(stub, email, password, name, reason):
    request = auth_pb2.RegisterRequest(email=email or unique_email(), password=password, display_name=name)
    if reason is None:
        assert (await stub.Register(request)).id
        return
    details = await expect_code(grpc.StatusCode.INVALID_ARGUMENT, stub.Register(request))
    assert reason in details


async def test_duplicate_email_is_refused_and_keeps_the_first_account(stub):
    email = unique_email()
    first = await register(stub, email=email, name="First")
    await expect_code(grpc.StatusCode.ALREADY_EXISTS, register(stub, email=email.upper(), password="Other-pass-77", name="Second"))
    assert (await stub.GetUser(auth_pb2.GetUserRequest(user_id=first.id))).display_name == "First"
    assert (await login(stub, email)).access_token  # the first password still works


async def test_wrong_password_then_lockout_per_account(stub, auth_settings):
    email = unique_email()
    await register(stub, email=email)
    for _ in range(auth_settings.max_failed_logins_per_account):
        await expect_code(grpc.StatusCode.UNAUTHENTICATED, login(stub, email, "Wrong-pass-1"))
    # Locked: even the right password is refused until the window passes.
    details = await expect_code(grpc.StatusCode.RESOURCE_EXHAUSTED, login(stub, email))
    assert "too many failed logins" in details


async def test_unknown_email_fails_like_a_wrong_password(stub):
    details = await expect_code(grpc.StatusCode.UNAUTHENTICATED, login(stub, unique_email()))
    assert details == "wrong email or password"


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
    change = auth_pb2.UpdateUserRequest(user_id=user.id, new_password="New-secret-42", current_password="Wrong-pass-1")
    await expect_code(grpc.StatusCode.PERMISSION_DENIED, stub.UpdateUser(change))
    assert (await login(stub, email)).access_token  # nothing changed
    change.current_password = PASSWORD
    await stub.UpdateUser(change)
    await expect_code(grpc.StatusCode.UNAUTHENTICATED, login(stub, email))
    assert (await login(stub, email, "New-secret-42")).access_token
    # Sessions opened with the old password end.
    await expect_code(grpc.StatusCode.UNAUTHENTICATED, stub.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token)))


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
