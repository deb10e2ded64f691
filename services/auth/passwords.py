"""Password hashing (argon2id) and the strength rule every new password must meet."""
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 8
MAX_LENGTH = 128
# The most common passwords that still pass the length and character-class rules.
_COMMON = {"password1", "password123", "passw0rd", "qwerty123", "letmein1", "welcome1", "iloveyou1", "abc12345", "12345678a"}


def weakness(password: str, email: str = "") -> str | None:
    """Why the password is too weak, or None when it is acceptable."""
    if not password:
        return "password must not be empty"
    if len(password) < MIN_LENGTH:
        return f"password must have at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"password must have at most {MAX_LENGTH} characters"
    classes = sum(
        [
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        ]
    )
    if classes < 2:
        return "password must mix at least two of: lower-case, upper-case, digits, symbols"
    if password.lower() in _COMMON or (email and password.lower() == email.lower()):
        return "password is too easy to guess"
    return None


class Hasher:
    def __init__(self, time_cost: int, memory_kib: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
