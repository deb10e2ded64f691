"""What the auth service accepts as an email and a display name, and the control-character rule all text shares."""
import unicodedata

from email_validator import EmailNotValidError, validate_email

MAX_DISPLAY_NAME = 100


def has_control_characters(text: str) -> bool:
    """NUL, escape and the other C0/C1 controls: never part of a name, an address or a password
    (and PostgreSQL cannot store NUL in text)."""
    return any(unicodedata.category(char) == "Cc" for char in text)


def normalise_email(email: str) -> str:
    """The canonical form the account is stored under; raises ValueError with the reason."""
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValueError(f"email is not valid: {exc}") from None


def clean_display_name(name: str) -> str:
    name = " ".join(name.split())  # tabs and line breaks become single spaces
    if not name:
        raise ValueError("display_name must not be empty")
    if has_control_characters(name):
        raise ValueError("display_name must not contain control characters")
    if len(name) > MAX_DISPLAY_NAME:
        raise ValueError(f"display_name must have at most {MAX_DISPLAY_NAME} characters")
    return name
