import pytest

from services.auth.passwords import MAX_LENGTH, Hasher, weakness


@pytest.mark.parametrize("password", ["Passw0rd!", "Summer2024", "qwertyuiop1", " " * 8 + "1", "Password1", "Tulips4ever"])
def test_common_and_breached_passwords_are_refused(password):
    # Each passes the old composition rule (8+ characters, two classes); each is in, or a variant of, the lists.
    assert "too easy to guess" in weakness(password)


def test_length_over_composition():
    assert weakness("") == "password must not be empty"
    assert "at least 8" in weakness("Ab1")
    assert weakness("correct horse battery staple") is None  # lower case and spaces only: a passphrase is welcome
    assert weakness("日本語のパスワードはとても長い") is None  # any printable Unicode
    long_phrase = "the quick brown fox jumps over the lazy dog near a quiet riverbank"
    assert len(long_phrase) > 64 and weakness(long_phrase) is None
    assert weakness(("Correct-horse-9 " * 9)[:MAX_LENGTH]) is None
    assert "at most 128" in weakness("x" * (MAX_LENGTH + 1))


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f", "\n", "\x85"])
def test_control_characters_are_refused(char):
    assert weakness(f"Correct-horse{char}battery") == "password must not contain control characters"


def test_the_accounts_own_email_and_name_are_easy_guesses():
    assert weakness("ada.lovelace.1") is None
    assert "too easy to guess" in weakness("ada.lovelace.1", "ada.lovelace@example.com", "Ada Lovelace")
    assert "too easy to guess" in weakness("me@example.com", "me@example.com")


def test_hash_is_argon2id_and_verifies():
    hasher = Hasher(time_cost=1, memory_kib=8192)
    digest = hasher.hash("Secret-pass-1")
    assert digest.startswith("$argon2id$")
    assert hasher.verify(digest, "Secret-pass-1")
    assert not hasher.verify(digest, "secret-pass-1")
    assert not hasher.verify("not a hash", "x")
