from services.auth.passwords import Hasher, weakness


def test_weakness_rules():
    assert weakness("") == "password must not be empty"
    assert "at least 8" in weakness("Ab1")
    assert "mix" in weakness("onlyletters")
    assert weakness("Tulips4ever") is None
    assert "guess" in weakness("Password1")
    assert "guess" in weakness("me@example.com", "me@example.com")


def test_hash_is_argon2id_and_verifies():
    hasher = Hasher(time_cost=1, memory_kib=8192)
    digest = hasher.hash("Secret-pass-1")
    assert digest.startswith("$argon2id$")
    assert hasher.verify(digest, "Secret-pass-1")
    assert not hasher.verify(digest, "secret-pass-1")
    assert not hasher.verify("not a hash", "x")
