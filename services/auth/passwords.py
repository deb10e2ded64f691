"""Password hashing (argon2id) and the rule every new password must meet (OWASP ASVS 2.1).

Length over composition: 8 to 128 characters of any printable Unicode (spaces and passphrases
welcome), no rules about character classes. What is refused is what attackers try first: common and
breached passwords and their variants (l33t, capitals, years, keyboard walks, repeats), and passwords
built from the account's own email or name. zxcvbn judges that from its ranked lists of leaked passwords,
words and names; a password must score 3 of 4 ("safely unguessable", about 10^8 guesses or more)."""
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

from services.auth.validation import has_control_characters

MIN_LENGTH = 8
MAX_LENGTH = 128
MIN_SCORE = 3
# zxcvbn's time grows steeply with length (seconds at 128 random characters): it judges the first 64,
# which a passphrase that long passes unless it repeats itself.
SCORED_CHARS = 64


def weakness(password: str, email: str = "", display_name: str = "") -> str | None:
    """Why the password is refused, or None when it is acceptable."""
    if not password:
        return "password must not be empty"
    if len(password) < MIN_LENGTH:
        return f"password must have at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"password must have at most {MAX_LENGTH} characters"
    if has_control_characters(password):
        return "password must not contain control characters"
    own_words = [word for word in (email, email.split("@")[0], *display_name.split()) if word]
    judged = zxcvbn(password[:SCORED_CHARS], user_inputs=own_words, max_length=SCORED_CHARS)
    if judged["score"] < MIN_SCORE:
        why = judged["feedback"]["warning"] or "it would be among the first guesses of an attacker"
        return f"password is too easy to guess: {why.rstrip('.')}. A few unrelated words make a strong one."
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
