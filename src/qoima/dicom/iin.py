"""Kazakhstan's individual identification number (IIN, ЖСН/ИИН): parsing and validation.

Layout: YYMMDD birth date, one century-and-sex digit, a four-digit serial and a check digit.
The check digit is the weighted sum mod 11 with weights 1..11; when that gives 10 a second pass
uses weights 3..11,1,2; when that also gives 10 the number is never issued.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from qoima.errors import QoimaError

_FIRST_WEIGHTS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
_SECOND_WEIGHTS = (3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2)
# Seventh digit: odd is male, even female; 1-2 born in the 1800s, 3-4 the 1900s, 5-6 the 2000s.
_CENTURY_BY_DIGIT = {1: 1800, 2: 1800, 3: 1900, 4: 1900, 5: 2000, 6: 2000}


class InvalidIinError(QoimaError):
    """An IIN that is not valid; ``reason`` is a stable code the UI translates."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Iin:
    value: str
    birth_date: datetime.date
    sex: str  # "M" or "F", the DICOM PatientSex codes


def check_digit(first_eleven: str) -> int | None:
    """The 12th digit for these 11, or None when no valid IIN starts with them."""
    digits = [int(char) for char in first_eleven]
    for weights in (_FIRST_WEIGHTS, _SECOND_WEIGHTS):
        remainder = sum(d * w for d, w in zip(digits, weights, strict=True)) % 11
        if remainder != 10:
            return remainder
    return None


def parse_iin(value: str) -> Iin:
    """Validate an IIN and return its birth date and sex; raise InvalidIinError saying why."""
    text = value.strip()
    if len(text) != 12:
        raise InvalidIinError("length", f"an IIN has 12 digits, not {len(text)} characters")
    if not text.isascii() or not text.isdigit():
        raise InvalidIinError("digits", "an IIN contains only the digits 0-9")
    century_digit = int(text[6])
    if century_digit not in _CENTURY_BY_DIGIT:
        raise InvalidIinError("century", f"7th digit {century_digit} is not a century/sex code")
    year = _CENTURY_BY_DIGIT[century_digit] + int(text[0:2])
    try:
        birth_date = datetime.date(year, int(text[2:4]), int(text[4:6]))
    except ValueError as exc:
        raise InvalidIinError("date", "digits 1-6 are not a birth date YYMMDD") from exc
    expected = check_digit(text[:11])
    if expected is None or expected != int(text[11]):
        raise InvalidIinError("checksum", "the check digit (12th) does not match")
    return Iin(text, birth_date, "M" if century_digit % 2 else "F")


def is_valid_iin(value: str) -> bool:
    try:
        parse_iin(value)
    except InvalidIinError:
        return False
    return True


def make_iin(birth_date: datetime.date, sex: str, serial: int) -> str:
    """A valid IIN for this birth date and sex, using the first usable serial from ``serial``."""
    century = birth_date.year // 100 * 100
    digit = {1800: 1, 1900: 3, 2000: 5}[century] + (0 if sex == "M" else 1)
    for candidate in range(serial, serial + 100):
        first_eleven = f"{birth_date:%y%m%d}{digit}{candidate % 10000:04d}"
        check = check_digit(first_eleven)
        if check is not None:
            return f"{first_eleven}{check}"
    raise ValueError("no usable serial")  # unreachable: at most a few serials in 11 are unusable
