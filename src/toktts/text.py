"""English text normalisation and the character vocabulary.

A character-level TTS can only say what its text spells out, so everything that is not a plain
word -- numbers, money, dates, times, units, abbreviations, symbols, addresses, acronyms -- is
rewritten as the words a reader would say, and the result is folded to a small lowercase alphabet:

    normalize("The 3rd of May, 1997, cost $5.50")
    -> "the third of may, nineteen ninety-seven, cost five dollars and fifty cents"

The same `normalize` runs over the corpus at data preparation and over every input at synthesis,
so the model is trained on exactly what it will be asked to read. Callers decide whether to call
it; nothing here keeps state between calls.

It is a pipeline of precompiled regular expressions applied in a fixed order, and the order carries
meaning: a phone number is read before its groups look like a range, a date before its day looks
like a cardinal, "$5" before "5", "3 p.m." before "p.m." looks like dotted initials, Roman numerals
before all-capital acronyms. Each stage rewrites only what it recognises and leaves the rest:

 1. fold Unicode to ASCII with unidecode; currency and degree signs first become private control
    characters (unidecode would turn "€" into "EUR" and "£" into "PS")
 2. URLs and e-mail addresses, read piece by piece ("example dot com slash docs"); phone numbers
 3. punctuation made regular: brackets become commas, dashes between words become commas,
    repeated marks collapse, no space before a mark
 4. numbers in context: dates, times, money, percentages, units, decades, ordinals, fractions,
    ranges, then plain cardinals, decimals and years (num2words supplies the words)
 5. abbreviations ("Mr.", "St." as saint or street, "e.g."), dotted initials ("U.S." -> "u s")
 6. Roman numerals after a monarch's name or a "chapter"-like word, then all-capital acronyms,
    spelled ("FBI" -> "f b i") or read ("NASA" -> "nasa")
 7. symbols to words ("&" -> "and"), then a tidy pass: lowercase, vocabulary characters only,
    single spaces

The output alphabet (`Vocab.chars`) is a-z, the space and nine marks that carry prosody:

    ' - , . ; : ! ? "

The apostrophe only inside or at the edge of a word (contractions, possessives), the hyphen only
inside a word (compounds, "twenty-one"). Parentheses, brackets and dashes between words are read as
pauses and become commas. No digit ever comes out. Single-letter initials keep their period
("J. D. Tippit" -> "j. d. tippit"), spelled acronyms do not.

`normalize` is deterministic, never raises on a `str` (it returns "" when nothing speakable
remains), and is idempotent: its output is a fixed point of itself, which the tests check on
arbitrary Unicode. The known gaps are listed in the docstring of `normalize`.
"""

from __future__ import annotations

import functools
import logging
import operator
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from num2words import num2words
from unidecode import unidecode

from toktts.errors import TokttsError

__all__ = ["PUNCTUATION", "VOCAB", "Vocab", "normalize"]

log = logging.getLogger(__name__)

PUNCTUATION = " '-,.;:!?\""
"""The non-letter characters `normalize` can emit (space first)."""


# --------------------------------------------------------------------------------------------
# Number words. num2words writes British English ("one hundred and one", with commas); the corpus
# (LJSpeech) says "one hundred one", so both are dropped. Cached: num2words costs ~40 us a call.

_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Past this many digits num2words runs out of scale names: read the digits one by one instead.
_MAX_CARDINAL_DIGITS = 15


@functools.lru_cache(maxsize=8192)
def _cardinal(n: int) -> str:
    return num2words(n).replace(",", "").replace(" and ", " ")


@functools.lru_cache(maxsize=4096)
def _ordinal(n: int) -> str:
    return num2words(n, to="ordinal").replace(",", "").replace(" and ", " ")


def _digits(s: str) -> str:
    """Every ASCII digit of `s` as a word: "007" -> "zero zero seven"."""
    return " ".join(_DIGIT_WORDS[ord(c) - 48] for c in s if "0" <= c <= "9")


def _integer(s: str) -> str:
    """An integer token (thousands commas allowed) as words; zero-padded ones digit by digit."""
    s = s.replace(",", "")
    if not s:
        return ""
    if (len(s) > 1 and s[0] == "0") or len(s) > _MAX_CARDINAL_DIGITS:
        return _digits(s)
    return _cardinal(int(s))


def _number(s: str) -> str:
    """A number token: "1,000" -> "one thousand", "3.14" -> "three point one four".

    More than one point (a version, an address) reads every part after the first digit by digit:
    "1.2.3" -> "one point two point three".
    """
    whole, *fractions = s.split(".")
    return " point ".join([_integer(whole), *(_digits(f) for f in fractions)]).strip()


def _year(n: int) -> str:
    """1997 -> "nineteen ninety-seven", 1905 -> "nineteen oh five", 2005 -> "two thousand five"."""
    if not 1000 <= n <= 9999 or n % 1000 == 0 or 2000 < n < 2010:
        return _cardinal(n)
    century, rest = divmod(n, 100)
    if rest == 0:
        return f"{_cardinal(century)} hundred"
    if rest < 10:
        return f"{_cardinal(century)} oh {_cardinal(rest)}"
    return f"{_cardinal(century)} {_cardinal(rest)}"


def _short_year(s: str) -> str:
    """A two-digit year: "97" -> "ninety-seven", "05" -> "oh five"."""
    n = int(s)
    return f"oh {_cardinal(n)}" if s[0] == "0" and n else _cardinal(n)


def _is_year_like(token: str) -> bool:
    return len(token) == 4 and token.isdigit() and 1100 <= int(token) <= 2099


def _plural(words: str) -> str:
    """Plural of the last word: "ninety" -> "nineties", "six" -> "sixes", "half" -> "halves"."""
    if words.endswith("half"):
        return words[:-1] + "ves"
    if words.endswith("y"):
        return words[:-1] + "ies"
    if words.endswith(("x", "s")):
        return words + "es"
    return words + "s"


# Denominators read as fractions ("three quarters"); any other a/b is read "a over b".
_FRACTION_DENOMINATORS = frozenset({2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 16, 32, 64, 100})


def _denominator(d: int, plural: bool) -> str:
    word = {2: "half", 4: "quarter"}.get(d) or _ordinal(d)
    return _plural(word) if plural else word


def _fraction(num: str, den: str) -> str:
    if (num, den) == ("24", "7"):
        return "twenty-four seven"  # the idiom, not a fraction
    n, d = int(num), int(den)
    if d not in _FRACTION_DENOMINATORS or num[0] == "0" or den[0] == "0":
        return f"{_integer(num)} over {_integer(den)}"
    return f"{_integer(num)} {_denominator(d, n != 1)}"


# --------------------------------------------------------------------------------------------
# Stage 1: Unicode to ASCII.

# Private markers for signs that unidecode would spell badly. The input's own control characters
# are removed before these are put in, so they cannot collide with text.
_EURO, _POUND, _YEN, _CENT, _DEGREE, _RUPEE = "\x10", "\x11", "\x12", "\x13", "\x14", "\x15"
_MONEY_SIGNS = "$" + _EURO + _POUND + _YEN + _RUPEE

_CONTROL_TO_SPACE = {c: " " for c in (*range(0x20), 0x7F)}

_UNICODE_SPECIAL = str.maketrans({
    "€": _EURO, "£": _POUND, "¥": _YEN, "¢": _CENT, "°": _DEGREE, "₹": _RUPEE,
    "—": " -- ", "―": " -- ", "–": "-", "‒": "-", "−": "-", "‐": "-", "‑": "-",
    "…": "...", "÷": " divided by ", "±": " plus or minus ", "§": " section ", "¶": " ",
    "©": " copyright ", "®": " ", "™": " ", "‰": " per mille ", "•": ",", "·": " ",
    "«": '"', "»": '"', "‹": "'", "›": "'", "„": '"', "‚": "'", "¿": " ", "¡": " ",
})


def _to_ascii(text: str) -> str:
    text = text.translate(_CONTROL_TO_SPACE)
    if text.isascii():
        return text
    # Compose first so that a letter and its combining accent fold together.
    text = unicodedata.normalize("NFC", text).translate(_UNICODE_SPECIAL)
    return unidecode(text)


# --------------------------------------------------------------------------------------------
# Stage 2: addresses and phone numbers, read before punctuation is touched.

# Bounded by "not a letter" rather than \b: "_" and digits glued to an address are split off later,
# and a second pass must find the same addresses as the first. A domain or mailbox starts only
# where its run of characters starts, so that a long run is tried once (linear, not quadratic).
_URL = re.compile(
    r"(?<![A-Za-z])(?:(?:https?|ftp)://|www\.)[^\s<>\"()]+"
    r"|(?<![A-Za-z0-9.-])(?:[A-Za-z0-9-]+\.)+"
    r"(?:com|org|net|edu|gov|io|ai|co|uk|de|fr|info|biz|dev|app|us|ca|au)"
    r"(?![A-Za-z])(?:/[^\s<>\"'()]*)?",
    re.IGNORECASE,
)
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+"
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![A-Za-z])"
)
_URL_HINT = re.compile(
    r"://|www\.|\.(?:com|org|net|edu|gov|io|ai|co|uk|de|fr|info|biz|dev|app|us|ca|au)(?![A-Za-z])",
    re.IGNORECASE,
)
_ADDRESS_PIECE = re.compile(r"[A-Za-z]+|[0-9]+|[^A-Za-z0-9]")
_ADDRESS_SCHEME = re.compile(r"^(https?|ftp)://", re.IGNORECASE)
_ADDRESS_SYMBOLS = {
    ".": "dot", "/": "slash", "@": "at", "-": "dash", "_": "underscore", ":": "colon",
    "?": "question mark", "=": "equals", "&": "and", "#": "hash", "+": "plus", "~": "tilde",
    "%": "percent",
}
# A sentence's own closing mark is not part of the address before it.
_ADDRESS_TRAILER = re.compile(r"[.,;:!?]+$")
_MARKS = frozenset(".,;:!?")


def _say_address(m: re.Match) -> str:
    address = m.group(0)
    trailer = _ADDRESS_TRAILER.search(address)
    tail = trailer.group(0) if trailer else ""
    address = address[: len(address) - len(tail)]
    scheme = _ADDRESS_SCHEME.match(address)
    words = []
    if scheme:  # "https://" -> "h t t p s colon slash slash"
        words += [" ".join(scheme.group(1).lower()), "colon slash slash"]
        address = address[scheme.end():]
    for piece in _ADDRESS_PIECE.findall(address):
        if piece.isalpha():
            words.append("w w w" if piece.lower() == "www" else piece.lower())
        elif piece.isdigit():
            words.append(_digits(piece))
        elif piece in _ADDRESS_SYMBOLS:
            words.append(_ADDRESS_SYMBOLS[piece])
    # No space between the address and a mark that follows it, so that the stages after this one
    # see the same text on a second pass, when the space before a mark is long gone.
    following = m.string[m.end(): m.end() + 1]
    return " " + " ".join(words) + tail + ("" if following in _MARKS else " ")


_PHONE_HINT = re.compile(r"[0-9]{3}[ .-][0-9]{4}")
_PHONE = re.compile(
    r"(?<![\d-])(?:\+?1[ .-])?(?:\((\d{3})\) ?|(\d{3})[ .-]?)(\d{3})[ .-](\d{4})(?![\d-])"
)


def _say_phone(m: re.Match) -> str:
    area = m.group(1) or m.group(2)
    return " " + ", ".join(_digits(g) for g in (area, m.group(3), m.group(4))) + " "


# A local number, 555-1234, when a word before it says it is one ("call", "phone", "at", ...):
# otherwise "pages 250-1200" is a range.
_LOCAL_PHONE = re.compile(r"(?<![\d,.$-])([2-9]\d{2})-(\d{4})(?![\d-]|[.,]\d)")
_PHONE_WORD = re.compile(r"\b(?:call|calls|called|calling|phone|telephone|tel|dial|fax|mobile|cell|number|no|at|is|"
                         r"line|extension|ext)\b\W*$", re.IGNORECASE)


def _say_local_phone(m: re.Match) -> str:
    if not _PHONE_WORD.search(m.string[max(0, m.start() - 24): m.start()]):
        return m.group(0)
    return f" {_digits(m.group(1))}, {_digits(m.group(2))} "


# --------------------------------------------------------------------------------------------
# Stage 3: punctuation made regular, before abbreviations look at periods.

_ASCII_PUNCTUATION = str.maketrans({
    "(": ",", ")": ",", "[": ",", "]": ",", "{": ",", "}": ",", "|": " ",
    "*": " ", "^": " ", "~": " ", "\\": " ", "_": " ", "`": "'",
})
_AND_OR = re.compile(r"\band/or\b", re.IGNORECASE)
# "<" and ">" are words only before a number ("< 5" -> "less than five"); an apostrophe only next to
# a letter or a digit ("don't", "'90s", "6'2\""). Removed here rather than at the end, so that no
# later removal leaves a space a second pass would see differently.
_LOOSE_SIGN = re.compile(r"[<>](?!\s?\d)|(?<![A-Za-z0-9])'(?![A-Za-z0-9])")
_DASH_PAUSE = re.compile(r" ?-{2,} ?| - (?<![0-9] - )(?![0-9])")
# A hyphen stays between two word characters ("well-known", "1-2", "F-16") and before a number or
# money ("-5", "-$3"); anywhere else it is a stray mark.
_STRAY_HYPHEN = re.compile(
    r"-(?<![A-Za-z0-9]-)(?!\s?[0-9$\x10\x11\x12\x15]|\.[0-9])"
    r"|-(?<=[A-Za-z0-9]-)(?![A-Za-z0-9$\x10\x11\x12\x15]|\s[0-9])"
)
# No space before a mark. A mark that was loose before a word stays apart from it: "x .com" must
# not become the address "x.com" only on a second pass.
_SPACE_BEFORE_MARK = re.compile(r" ([.,;:!?])(?![0-9])(?=([A-Za-z])?)")
_ELLIPSIS = re.compile(r"\.{2,}")
# A period after a symbol and before a word ends something ("$.com"): keep it apart from the word,
# as the symbol will be a word ("dollars") by the end and must not make an address then.
_SYMBOL_PERIOD = re.compile(r"\.(?<=[^\w\s.,;:!?'\"-]\.)(?=[A-Za-z])")
# A run of marks that does not start with a period: keep the strongest. A run that starts with a
# period may be an abbreviation's period ("etc.,"), which the abbreviation stage consumes.
_MARK_RUN = re.compile(r"[,;:!?][.,;:!?]+")
_MARK_STRENGTH = "?!.;:,"
_SPACE_AFTER_MARK = re.compile(r"([,;!?])(?=[A-Za-z])|(?<=[^0-9 ])(,)(?=[0-9])")
_COLON_IN_WORD = re.compile(r"(?<=[A-Za-z]):(?=[A-Za-z])")


def _collapse_spaces(text: str) -> str:
    return " ".join(text.split())  # faster than a regex, and linear on any run of spaces


# Leading marks, but not the point of a leading decimal (".5").
_LEADING_MARKS_OR_SPACE = re.compile(r"^[\s.,;:!?]+(?![0-9])")


def _strongest(m: re.Match) -> str:
    run = m.group(0)
    mark = next(c for c in _MARK_STRENGTH if c in run)
    following = m.string[m.end(): m.end() + 1]
    return mark + " " if following.isalpha() else mark


def _close_up(m: re.Match) -> str:
    return m.group(1) + " " if m.group(2) else m.group(1)


def _regular_punctuation(text: str) -> str:
    # Whitespace is collapsed before anything else looks at it: a pattern that starts with a run of
    # spaces and then fails would otherwise be tried at every space of a long run (quadratic).
    text = text.translate(_ASCII_PUNCTUATION)
    if "/" in text:
        text = _AND_OR.sub("and or", text)
    if "'" in text or "<" in text or ">" in text:
        text = _LOOSE_SIGN.sub(" ", text)
    text = _collapse_spaces(text)
    if "-" in text:
        text = _collapse_spaces(_STRAY_HYPHEN.sub(" ", _DASH_PAUSE.sub(", ", text)))
    if ".." in text:
        text = _collapse_spaces(_ELLIPSIS.sub(". ", text))
    text = _SPACE_BEFORE_MARK.sub(_close_up, text)
    if "." in text:
        text = _SYMBOL_PERIOD.sub(". ", text)
    text = _MARK_RUN.sub(_strongest, text)
    if ":" in text:
        text = _COLON_IN_WORD.sub(" ", text)
    text = _SPACE_AFTER_MARK.sub(r"\1\2 ", text)
    return _LEADING_MARKS_OR_SPACE.sub("", _collapse_spaces(text))


# --------------------------------------------------------------------------------------------
# Stage 4: numbers in context. `_NUM` is one number token: "1,000,000", "3.14", "42", ".5".

def _apart(say: Callable[[re.Match], str]) -> Callable[[re.Match], str]:
    """Keep a reading apart from a letter or digit glued to what it replaces: "US$5" -> "US five
    dollars", not "USfive dollars"."""

    @functools.wraps(say)
    def apart(m: re.Match) -> str:
        words = say(m)
        if words == m.group(0):
            return words
        s, start, end = m.string, m.start(), m.end()
        if start and s[start - 1].isalnum():
            words = " " + words
        if end < len(s) and s[end].isalnum():
            words += " "
        return words

    return apart


# It starts only where a run of digits, points and commas starts: every pattern built on it then
# tries each run once, not once per group, which would be quadratic on a long run ("1,1,1,...").
# The look-behind comes after the first character so that the regex engine can skip ahead to the
# next digit or point.
_NUM = (r"(?:[0-9](?<![0-9.,][0-9])(?:[0-9]{0,2}(?:,[0-9]{3})+(?![0-9])|[0-9]*)(?:\.[0-9]+)*"
        r"|\.(?<![0-9]\.)[0-9]+)")
_AT_END = re.compile(r"[\s\"']*$")
_NEXT_IS_CAPITAL = re.compile(r"\s*[\"']?[A-Z]")


def _stop_if_final(m: re.Match, consumed_period: bool, before_capital: bool = False) -> str:
    """The period an abbreviation swallowed, given back when it also ended the sentence."""
    if not consumed_period:
        return ""
    if _AT_END.match(m.string, m.end()):
        return "."
    if before_capital and _NEXT_IS_CAPITAL.match(m.string, m.end()):
        return "."
    return ""


_NUMBER_SIGN_HINT = re.compile(r"[oOrRsS]\. ?[0-9]")
_DATE_HINT = re.compile(r"[0-9][/.-][0-9]{1,2}[/.-][0-9]")
_AMPM_HINT = re.compile(r"[0-9] ?[AaPp]\.? ?[Mm]")
_MONTH_HINT = re.compile(r"(?:Jan|Feb|Ma[ry]|Apr|Ju[nl]|Aug|Sep|Oct|Nov|Dec)")
_TIMES_HINT = re.compile(r"[0-9] ?[xX]")
_ORDINAL_HINT = re.compile(r"[0-9](?:st|nd|rd|th|ST|ND|RD|TH)")
_NUMBER_SIGN = re.compile(r"\b(?:No|Nos|Nr)\. ?(?=\d)|#(?=\d)", re.IGNORECASE)


@_apart
def _say_number_sign(m: re.Match) -> str:
    return "numbers " if m.group(0)[:3].lower() == "nos" else "number "


_MONTH_NAMES = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)
_MONTH_ABBREVIATIONS = {
    "Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "Jun": 6, "Jul": 7, "Aug": 8, "Sep": 9, "Sept": 9,
    "Oct": 10, "Nov": 11, "Dec": 12,
}
_MONTH_NUMBERS = {name.capitalize(): i + 1 for i, name in enumerate(_MONTH_NAMES)}
_MONTH_NUMBERS.update(_MONTH_ABBREVIATIONS)
_MONTH = (r"(January|February|March|April|May|June|July|August|September|October|November"
          r"|December|(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\b\.?)")
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_DAY_RANGE = r"(?:\s?(?:-|to|through)\s?" + _DAY + r")?"

_MONTH_DAY = re.compile(r"\b" + _MONTH + r"\s" + _DAY + _DAY_RANGE + r"\b(?!:)(?:,?\s(\d{4})\b)?")
_DAY_MONTH = re.compile(r"\b" + _DAY + r"\s(?:of\s)?" + _MONTH + r"(?![A-Za-z])(?:,?\s(\d{4})\b)?")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
# "." as a date separator only with a four-digit year: "1.10.20" is more likely a version.
_NUMERIC_DATE = re.compile(
    r"\b(\d{1,2})([/-])(\d{1,2})\2(\d{4}|\d{2})\b|\b(\d{1,2})\.(\d{1,2})\.(\d{4})\b"
)


def _month_word(token: str) -> str:
    return _MONTH_NAMES[_MONTH_NUMBERS[token.rstrip(".")] - 1]


def _month_first(month: int, day: int, year: str | None) -> str:
    words = f"{_MONTH_NAMES[month - 1]} {_ordinal(day)}"
    if year:
        words += ", " + (_year(int(year)) if len(year) == 4 else _short_year(year))
    return words


def _day_first(month: int, day: int, year: str | None, the: bool = True) -> str:
    words = f"{'the ' if the else ''}{_ordinal(day)} of {_MONTH_NAMES[month - 1]}"
    if year:
        words += ", " + (_year(int(year)) if len(year) == 4 else _short_year(year))
    return words


@_apart
def _say_month_day(m: re.Match) -> str:
    month, day, last_day, year = m.group(1), int(m.group(2)), m.group(3), m.group(4)
    if not 1 <= day <= 31 or (last_day and not 1 <= int(last_day) <= 31):
        return m.group(0)
    words = f"{_month_word(month)} {_ordinal(day)}"
    if last_day:
        words += f" to {_ordinal(int(last_day))}"
    if year:
        words += ", " + _year(int(year))
    return words + _stop_if_final(m, m.group(0).endswith("."))


def _preceded_by_the(m: re.Match) -> bool:
    return m.string[max(0, m.start() - 4): m.start()].lower() == "the "


@_apart
def _say_day_month(m: re.Match) -> str:
    day, month, year = int(m.group(1)), m.group(2), m.group(3)
    if not 1 <= day <= 31:
        return m.group(0)
    words = _day_first(_MONTH_NUMBERS[month.rstrip(".")], day, year, not _preceded_by_the(m))
    return words + _stop_if_final(m, m.group(0).endswith("."))


@_apart
def _say_iso_date(m: re.Match) -> str:
    year, month, day = m.group(1), int(m.group(2)), int(m.group(3))
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m.group(0)
    return _month_first(month, day, year)


@_apart
def _say_numeric_date(m: re.Match) -> str:
    if m.group(1):
        first, second, year = int(m.group(1)), int(m.group(3)), m.group(4)
    else:
        first, second, year = int(m.group(5)), int(m.group(6)), m.group(7)
    # Month first as in the US unless the first field cannot be a month.
    if 1 <= first <= 12 and 1 <= second <= 31:
        return _month_first(first, second, year)
    if 1 <= second <= 12 and 1 <= first <= 31:
        return _day_first(second, first, year, not _preceded_by_the(m))
    return m.group(0)


_AMPM = r"(?:\s?([AaPp])\.?\s?[Mm]\b(\.?))"
_CLOCK = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?(?!\d)" + _AMPM + "?")
_HOUR_AMPM = re.compile(r"\b(1[0-2]|0?[1-9])" + _AMPM)


def _ampm(m: re.Match, letter: str | None, period: str | None) -> str:
    if not letter:
        return ""
    return f" {letter.lower()} m" + _stop_if_final(m, bool(period), before_capital=True)


@_apart
def _say_clock(m: re.Match) -> str:
    hour, minute, second = int(m.group(1)), int(m.group(2)), m.group(3)
    suffix = _ampm(m, m.group(4), m.group(5))
    words = _cardinal(hour)
    if minute == 0:
        words += "" if suffix else " o'clock"
    elif minute < 10:
        words += f" oh {_cardinal(minute)}"
    else:
        words += f" {_cardinal(minute)}"
    if second and int(second):
        words += f" and {_cardinal(int(second))} second{'s' if int(second) != 1 else ''}"
    return words + suffix


@_apart
def _say_hour_ampm(m: re.Match) -> str:
    return _cardinal(int(m.group(1))) + _ampm(m, m.group(2), m.group(3))


# name, names, subunit, subunits: a currency without a subunit reads its decimals with "point".
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    _EURO: ("euro", "euros", "cent", "cents"),
    _POUND: ("pound", "pounds", "penny", "pence"),
    _YEN: ("yen", "yen", None, None),
    _RUPEE: ("rupee", "rupees", None, None),
}
_SCALES = {"k": "thousand", "m": "million", "mn": "million", "b": "billion", "bn": "billion"}
_SCALE = r"(?:\s(thousand|million|billion|trillion)\b|(mn|bn|[kKmMbB])\b)?"
_MONEY_BEFORE = re.compile(r"([" + _MONEY_SIGNS + r"])\s?(" + _NUM + r")" + _SCALE)
_MONEY_AFTER = re.compile(r"(" + _NUM + r")\s?([" + _MONEY_SIGNS + r"])(?!\s?\d)")
_CENTS = re.compile(r"(" + _NUM + r")\s?" + _CENT)


def _money(sign: str, amount: str, scale: str | None) -> str:
    one, many, sub_one, sub_many = _CURRENCIES[sign]
    if scale:
        return f"{_number(amount)} {scale} {many}"
    whole, _, frac = amount.partition(".")
    whole = whole.replace(",", "") or "0"
    if frac and (len(frac) > 2 or sub_one is None):
        return f"{_number(amount)} {many}"
    minor = int(frac.ljust(2, "0")) if frac else 0
    major = int(whole)
    parts = []
    if major or not minor:
        parts.append(f"{_integer(whole)} {one if whole == '1' else many}")
    if minor:
        parts.append(f"{_cardinal(minor)} {sub_one if minor == 1 else sub_many}")
    return " and ".join(parts)


@_apart
def _say_money_before(m: re.Match) -> str:
    scale = m.group(3) or _SCALES.get((m.group(4) or "").lower())
    return _money(m.group(1), m.group(2), scale)


@_apart
def _say_money_after(m: re.Match) -> str:
    return _money(m.group(2), m.group(1), None)


@_apart
def _say_cents(m: re.Match) -> str:
    return f"{_number(m.group(1))} cent{'' if m.group(1) == '1' else 's'}"


# A minus sign: a hyphen before a number that does not join two words or numbers ("1-2").
_MINUS = re.compile(r"(?<![\w.\-])(?<!\d )-(?=[" + _MONEY_SIGNS + r"]?\.?\d)")
_PERCENT = re.compile(r"(" + _NUM + r")\s?%")
_COMPARISON = re.compile(r"\s?([<>])\s?(?=\d)")

_UNITS = {
    "km": ("kilometer", "kilometers"), "m": ("meter", "meters"), "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"), "mi": ("mile", "miles"), "ft": ("foot", "feet"),
    "yd": ("yard", "yards"), "kg": ("kilogram", "kilograms"), "g": ("gram", "grams"),
    "mg": ("milligram", "milligrams"), "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"), "l": ("liter", "liters"), "L": ("liter", "liters"),
    "ml": ("milliliter", "milliliters"), "mL": ("milliliter", "milliliters"),
    "mph": ("mile per hour", "miles per hour"), "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"), "m/s": ("meter per second", "meters per second"),
    "sec": ("second", "seconds"), "secs": ("second", "seconds"), "min": ("minute", "minutes"),
    "mins": ("minute", "minutes"), "h": ("hour", "hours"), "hr": ("hour", "hours"),
    "hrs": ("hour", "hours"), "ms": ("millisecond", "milliseconds"), "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"), "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"), "KB": ("kilobyte", "kilobytes"), "kB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"), "GB": ("gigabyte", "gigabytes"), "TB": ("terabyte", "terabytes"),
    "W": ("watt", "watts"), "kW": ("kilowatt", "kilowatts"), "kWh": ("kilowatt hour", "kilowatt hours"),
    "V": ("volt", "volts"), _DEGREE + "C": ("degree celsius", "degrees celsius"),
    _DEGREE + "F": ("degree fahrenheit", "degrees fahrenheit"), _DEGREE: ("degree", "degrees"),
    "deg": ("degree", "degrees"),
}
_UNIT = re.compile(
    r"(" + _NUM + r")\s?("
    + "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
    + r")(?![A-Za-z0-9])"
)
_FEET_INCHES = re.compile(r"\b(\d+)' ?(\d{1,2})(?:\"|'')")
_BY = re.compile(r"(?<=\d) ?[xX] ?(?=\d)")
_TIMES = re.compile(r"(?<=\d)[xX]\b")
_DECADE = re.compile(r"(?<![\w'])'?([1-9]0)'?s\b|\b(1[1-9]\d0|20\d0)'?s\b")
_SHORT_YEAR = re.compile(r"(?<![\w'])'(\d{2})\b(?!')")
_ORDINAL = re.compile(r"([0-9](?<![\w.,][0-9])(?:[0-9]{0,2}(?:,[0-9]{3})+|[0-9]*))(st|nd|rd|th)\b",
                      re.IGNORECASE)
_MIXED_FRACTION = re.compile(r"\b(\d+) (\d+)/(\d+)\b(?!/)")
_FRACTION = re.compile(r"(?<![\d/.])(\d+)/(\d+)(?![\d/])")
_RANGE = re.compile(r"(?<![\d.,])(" + _NUM + r")(?:-| - )(" + _NUM + r")(?!\d|\.\d)")
_LETTER_DIGIT = re.compile(r"[A-Za-z](?=[0-9])|[0-9](?=[A-Za-z])")
_RATIO = re.compile(r"(?<=\d):(?=\d)")
_NUMBER = re.compile(_NUM)
_PREVIOUS_WORD = re.compile(r"([A-Za-z]+)\W*$")
# After these a four-digit number is a quantity, not a year: "over 1500 men".
_QUANTITY_CUES = frozenset({
    "about", "approximately", "nearly", "almost", "over", "under", "some", "than", "roughly",
    "exactly", "total", "totaling", "totalling",
})
# After these an early four-digit number is a year as well: "in 1066" -> "in ten sixty-six".
_YEAR_CUES = frozenset({"in", "since", "year", "circa", "until", "till", "from", "by", "before", "after"})
_DIGIT_RUN = re.compile(r"\d+")


@_apart
def _say_percent(m: re.Match) -> str:
    return _number(m.group(1)) + " percent"


@_apart
def _say_comparison(m: re.Match) -> str:
    return " less than " if m.group(1) == "<" else " greater than "


@_apart
def _say_unit(m: re.Match) -> str:
    one, many = _UNITS[m.group(2)]
    return f"{_number(m.group(1))} {one if m.group(1) == '1' else many}"


@_apart
def _say_feet_inches(m: re.Match) -> str:
    feet, inches = m.group(1), m.group(2)
    return (f"{_integer(feet)} {'foot' if feet == '1' else 'feet'} "
            f"{_integer(inches)} {'inch' if inches == '1' else 'inches'}")


@_apart
def _say_decade(m: re.Match) -> str:
    if m.group(1):
        return _plural(_cardinal(int(m.group(1))))
    return _plural(_year(int(m.group(2))))


@_apart
def _say_short_year(m: re.Match) -> str:
    return _short_year(m.group(1))


@_apart
def _say_ordinal(m: re.Match) -> str:
    digits = m.group(1).replace(",", "")
    if len(digits) > _MAX_CARDINAL_DIGITS:
        return _digits(digits) + " " + m.group(2).lower()
    return _ordinal(int(digits))


@_apart
def _say_mixed_fraction(m: re.Match) -> str:
    whole, num, den = m.group(1), m.group(2), m.group(3)
    d = int(den)
    if d not in _FRACTION_DENOMINATORS or num[0] == "0" or den[0] == "0" or int(num) >= d:
        return m.group(0)
    part = f"a {_denominator(d, False)}" if num == "1" else _fraction(num, den)
    return f"{_integer(whole)} and {part}"


@_apart
def _say_fraction(m: re.Match) -> str:
    return _fraction(m.group(1), m.group(2))


def _int_or_year(token: str) -> str:
    return _year(int(token)) if _is_year_like(token) else _number(token)


@_apart
def _say_range(m: re.Match) -> str:
    first, second = m.group(1), m.group(2)
    if _is_year_like(first) and len(second) == 2 and second.isdigit():
        return f"{_year(int(first))} to {_short_year(second)}"
    return f"{_int_or_year(first)} to {_int_or_year(second)}"


@_apart
def _say_number(m: re.Match) -> str:
    token = m.group(0)
    if len(token) == 4 and token.isdigit() and 1000 <= int(token) <= 2099:
        previous = _PREVIOUS_WORD.search(m.string, max(0, m.start() - 24), m.start())
        word = previous.group(1).lower() if previous else ""
        if (_is_year_like(token) and word not in _QUANTITY_CUES) or word in _YEAR_CUES:
            return _year(int(token))
    return _number(token)


@_apart
def _say_digits(m: re.Match) -> str:
    return _digits(m.group(0))


def _numbers(text: str) -> str:
    if not any(c in text for c in "0123456789"):
        return text  # most corpus sentences: skip two dozen regex passes
    # Each pattern needs something most text lacks. Looking for that first (a substring test, or a
    # pattern that starts with a digit, which the regex engine scans for quickly) is far cheaper
    # than a full pass of a pattern that cannot match.
    if "#" in text or _NUMBER_SIGN_HINT.search(text):
        text = _NUMBER_SIGN.sub(_say_number_sign, text)
    if _DATE_HINT.search(text):
        text = _ISO_DATE.sub(_say_iso_date, text)
        text = _NUMERIC_DATE.sub(_say_numeric_date, text)
    if ":" in text:
        text = _CLOCK.sub(_say_clock, text)
    if _AMPM_HINT.search(text):
        text = _HOUR_AMPM.sub(_say_hour_ampm, text)
    if _MONTH_HINT.search(text):
        text = _MONTH_DAY.sub(_say_month_day, text)
        text = _DAY_MONTH.sub(_say_day_month, text)
    if "-" in text:
        text = _MINUS.sub("minus ", text)
    if any(c in text for c in _MONEY_SIGNS):
        text = _MONEY_BEFORE.sub(_say_money_before, text)
        text = _MONEY_AFTER.sub(_say_money_after, text)
    if _CENT in text:
        text = _CENTS.sub(_say_cents, text)
    if "%" in text:
        text = _PERCENT.sub(_say_percent, text)
    if "<" in text or ">" in text:
        text = _COMPARISON.sub(_say_comparison, text)
    if "'" in text:
        text = _FEET_INCHES.sub(_say_feet_inches, text)
    text = _UNIT.sub(_say_unit, text)
    if _TIMES_HINT.search(text):
        text = _BY.sub(" by ", text)
        text = _TIMES.sub(" times", text)
    if "0s" in text or "0's" in text:
        text = _DECADE.sub(_say_decade, text)
    if "'" in text:
        text = _SHORT_YEAR.sub(_say_short_year, text)
    if _ORDINAL_HINT.search(text):
        text = _ORDINAL.sub(_say_ordinal, text)
    if "/" in text:
        text = _MIXED_FRACTION.sub(_say_mixed_fraction, text)
        text = _FRACTION.sub(_say_fraction, text)
    if "-" in text:
        text = _RANGE.sub(_say_range, text)
    text = _LETTER_DIGIT.sub(r"\g<0> ", text)
    if ":" in text:
        text = _RATIO.sub(" to ", text)
    text = _NUMBER.sub(_say_number, text)
    return _DIGIT_RUN.sub(_say_digits, text)  # whatever digits the patterns above left


# --------------------------------------------------------------------------------------------
# Stage 5: abbreviations and dotted initials. They need their period, and, except for the few that
# are written in lowercase ("etc.", "approx."), a capital: "Mr." and "MR." are "mister", "mr." is
# left alone. The output is lowercase, so a second pass expands nothing the first did not.

_ABBREVIATIONS = {
    "mr": "mister", "mrs": "missus", "ms": "miz", "messrs": "messieurs", "mme": "madame",
    "prof": "professor", "gen": "general", "maj": "major", "capt": "captain",
    "lt": "lieutenant", "col": "colonel", "sgt": "sergeant", "cpl": "corporal", "pvt": "private",
    "cmdr": "commander", "adm": "admiral", "gov": "governor", "sen": "senator",
    "rep": "representative", "rev": "reverend", "hon": "honorable", "mt": "mount", "ft": "fort",
    "fig": "figure", "vol": "volume", "apt": "apartment", "dept": "department",
    "univ": "university", "approx": "approximately", "viz": "namely", "drs": "doctors",
}
_LOWERCASE_ABBREVIATIONS = frozenset({"approx", "viz"})
# These often end a sentence, whose period they then share.
_FINAL_ABBREVIATIONS = {
    "jr": "junior", "sr": "senior", "esq": "esquire", "co": "company", "corp": "corporation",
    "inc": "incorporated", "ltd": "limited", "bros": "brothers", "ave": "avenue",
    "blvd": "boulevard", "rd": "road", "hwy": "highway",
}
# Any short word before a period, looked up in the tables: faster than an alternation of them all.
_WORD_PERIOD = re.compile(r"\b([A-Za-z]{2,6})\.")
# "Mr Smith" without the period, as British English writes it.
_BARE_TITLE = re.compile(r"\b(Mr|Mrs|Ms|MR|MRS)\b(?=\s[A-Z])")
_LATIN = re.compile(r"(?<!\w)(e\.g|i\.e|a\.k\.a|etc|vs|v\.s)\b\.?", re.IGNORECASE)
_LATIN_WORDS = {"eg": "for example", "ie": "that is", "aka": "also known as",
                "etc": "et cetera", "vs": "versus"}
_PHD = re.compile(r"\bP[hH]\.? ?D\b\.?")
# Starts with a character class (not a look-behind) so that the engine can skip ahead quickly.
_SAINT_STREET_DOCTOR_DRIVE = re.compile(r"[SD](?<![\w][SD])[TtRr]\b(\.?)")
_SAINT_STREET_DOCTOR_DRIVE_WORDS = frozenset({"St", "ST", "Dr", "DR"})
_PREVIOUS_IS_CAPITALISED = re.compile(r"[A-Z][a-z]+\s$")
_DOTTED_HINT = re.compile(r"\.[A-Za-z](?![A-Za-z])")
_DOTTED_LETTERS = re.compile(r"(?<!\w)[A-Za-z](?:\.[A-Za-z])+\b(\.?)")


@_apart
def _say_abbreviation(m: re.Match) -> str:
    word = m.group(1)
    key = word.lower()
    if word == key and key not in _LOWERCASE_ABBREVIATIONS:
        return m.group(0)
    if key in _FINAL_ABBREVIATIONS:
        return _FINAL_ABBREVIATIONS[key] + _stop_if_final(m, True)
    return _ABBREVIATIONS.get(key, m.group(0))


@_apart
def _say_bare_title(m: re.Match) -> str:
    return _ABBREVIATIONS[m.group(1).lower()]


@_apart
def _say_latin(m: re.Match) -> str:
    key = m.group(1).lower().replace(".", "")
    words = _LATIN_WORDS[key]
    # "etc." at the end of a sentence also ends it.
    period = key == "etc" and m.group(0).endswith(".")
    return words + _stop_if_final(m, period, before_capital=True)


@_apart
def _say_phd(m: re.Match) -> str:
    return "p h d" + _stop_if_final(m, m.group(0).endswith("."))


@_apart
def _say_st_dr(m: re.Match) -> str:
    word, period = m.group(0).rstrip("."), m.group(1)
    if word not in _SAINT_STREET_DOCTOR_DRIVE_WORDS:
        return m.group(0)
    next_capital = _NEXT_IS_CAPITAL.match(m.string, m.end()) is not None
    previous_capital = _PREVIOUS_IS_CAPITALISED.search(
        m.string, max(0, m.start() - 30), m.start()) is not None
    if not period and (word.isupper() or not (next_capital or previous_capital)):
        return m.group(0)  # a bare "DR" or "St": nothing says what it stands for
    if word.lower() == "st":
        # "St. Paul" is a saint, "Elm St." a street; "Bury St. Edmunds" reads as a saint too.
        return ("saint" if next_capital else "street") + _stop_if_final(m, bool(period))
    if next_capital or not previous_capital:
        return "doctor"  # "Dr. Smith"
    return "drive" + _stop_if_final(m, bool(period))  # "Mulholland Dr."


@_apart
def _say_dotted_letters(m: re.Match) -> str:
    letters = " ".join(c.lower() for c in m.group(0) if c.isalpha())
    return letters + _stop_if_final(m, bool(m.group(1)))


def _abbreviations(text: str) -> str:
    lower = text.lower()
    if any(hint in lower for hint in ("e.g", "i.e", "a.k.a", "etc", "vs", "v.s")):
        text = _LATIN.sub(_say_latin, text)
    if "PhD" in text or "PHD" in text or "Ph." in text or "PH." in text or "Ph D" in text:
        text = _PHD.sub(_say_phd, text)
    if "." in text:
        text = _WORD_PERIOD.sub(_say_abbreviation, text)
    if "Mr" in text or "Ms" in text or "MR" in text:
        text = _BARE_TITLE.sub(_say_bare_title, text)
    text = _SAINT_STREET_DOCTOR_DRIVE.sub(_say_st_dr, text)
    if "." in text and _DOTTED_HINT.search(text):
        text = _DOTTED_LETTERS.sub(_say_dotted_letters, text)
    return text


# --------------------------------------------------------------------------------------------
# Stage 6: Roman numerals and acronyms, both decided by capital letters.

_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
_ROMAN = r"(M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3}))"
# A numeral after these words is a number: "Chapter IV" -> "chapter four". Only I, V, X and L, so
# that "Class C" and "Type D" stay letters.
_CHAPTER_WORDS = frozenset({
    "chapter", "part", "book", "volume", "act", "scene", "section", "article", "appendix",
    "episode", "title", "phase", "stage", "level", "psalm", "canto", "war", "round", "lesson",
    "step", "table", "plate", "grade", "tier", "unit",
})
# One pattern finds "word NUMERAL"; the word before decides. The literal space comes first so that
# the regex engine can skip from space to space.
_ROMAN_AFTER_WORD = re.compile(r" (?<=[A-Za-z] )(?=[IVXLCDM])" + _ROMAN + r"\b('s)?(?![-'])")
_LAST_WORD = re.compile(r"[A-Za-z]+$")
_CHAPTER_NUMERAL = re.compile(r"(?:XL|L?X{0,3})(?:IX|IV|V?I{0,3})")
# After a monarch's or pope's name the numeral is a regnal ordinal: "Henry VIII" -> "henry the
# eighth". After any other capitalised word only a numeral of two or more letters counts, so that
# "Malcolm X" and "Plan B" keep their letters.
_REGNAL_NAMES = frozenset({
    "Alexander", "Alfonso", "Amenhotep", "Benedict", "Boniface", "Carlos", "Catherine",
    "Charles", "Christian", "Clement", "Constantine", "David", "Edward", "Elizabeth", "Ferdinand",
    "Francis", "Frederick", "George", "Gregory", "Gustav", "Gustavus", "Haakon", "Harald", "Henry",
    "Innocent", "Ivan", "James", "John", "Juan", "Leo", "Leopold", "Louis", "Ludwig", "Mary",
    "Napoleon", "Nicholas", "Olaf", "Otto", "Paul", "Pedro", "Peter", "Philip", "Pius", "Ramesses",
    "Richard", "Robert", "Rudolf", "Sixtus", "Stephen", "Urban", "Victor", "Wilhelm", "William",
})
# Both start with a capital, which the regex engine can skip to; the look-behind that makes it the
# start of a word comes after it.
_ACRONYM = re.compile(r"[A-Z](?<![\w.'][A-Z])([A-Z]+)('s|s)?\b(?!\.[A-Za-z])")
_CAPITAL_WORD = re.compile(r"[A-Z](?<!\w[A-Z])[A-Z]+\b")

# Acronyms said as words although short, and a few said letter by letter although they could be
# read, for the sake of all-capital (shouted) text where other capital words are read as words.
_READ_ACRONYMS = frozenset({
    "NASA", "NATO", "UNESCO", "UNICEF", "AIDS", "OPEC", "FIFA", "NAFTA", "LASER", "RADAR",
    "SONAR", "SCUBA", "COVID", "SWAT", "GIF", "JPEG", "PIN", "RAM", "ROM", "CAPTCHA", "NASDAQ",
    "IKEA", "LEGO", "FEMA", "OSHA", "POTUS", "SCOTUS", "DARPA", "UEFA", "ASCII", "ISIS",
    "NIMBY", "SARS", "MERS", "ANSI", "SIM", "WASP", "ZIP", "GIS", "MOMA", "OFCOM", "ASEAN",
})
_SPELLED_ACRONYMS = frozenset({
    "CIA", "USA", "EU", "UFO", "AI", "IOU", "CEO", "CFO", "CTO", "ATM", "NAACP", "USSR", "UN",
    "OK", "ID", "IQ", "AM", "PM", "PO", "UK", "USB",
})
# Two consonants that can start or end an English word: "HELLO" and "WORLD" read, "USSR" spells.
_ONSETS = frozenset({
    "bl", "br", "ch", "cl", "cr", "dr", "dw", "fl", "fr", "gl", "gr", "kl", "kn", "kr", "ph", "pl",
    "pr", "qu", "sc", "sh", "sk", "sl", "sm", "sn", "sp", "st", "sw", "th", "tr", "tw", "wh", "wr",
})
_CODAS = frozenset({
    "ch", "ck", "ct", "ds", "ft", "gs", "ld", "lf", "lk", "lm", "lp", "ls", "lt", "mp", "ms", "nd",
    "ng", "nk", "ns", "nt", "pt", "rb", "rd", "rf", "rk", "rl", "rm", "rn", "rp", "rs", "rt", "sh",
    "sk", "sp", "ss", "st", "th", "ts",
})
_VOWELS = frozenset("aeiouy")
_FOUR_CONSONANTS = re.compile(r"[^aeiouy]{4}")


def _pronounceable(word: str) -> bool:
    """Whether an all-capital word can be read as an English word: "HELLO" can, "NBC" cannot."""
    w = word.lower()
    if not any(c in _VOWELS for c in w) or _FOUR_CONSONANTS.search(w):
        return False
    if w[0] not in _VOWELS and w[1] not in _VOWELS and w[:2] not in _ONSETS:
        return False
    return w[-1] in _VOWELS or w[-2] in _VOWELS or w[-2:] in _CODAS


def _roman_value(numeral: str) -> int:
    total = 0
    for i, c in enumerate(numeral):
        value = _ROMAN_VALUES[c]
        following = _ROMAN_VALUES[numeral[i + 1]] if i + 1 < len(numeral) else 0
        total += -value if value < following else value
    return total


def _say_roman(m: re.Match) -> str:
    numeral, possessive = m.group(1), m.group(2) or ""
    if not numeral:
        return m.group(0)
    before = _LAST_WORD.search(m.string, max(0, m.start() - 24), m.start())
    word = before.group(0) if before else ""
    if word.lower() in _CHAPTER_WORDS and _CHAPTER_NUMERAL.fullmatch(numeral):
        if numeral == "I" and not word[0].isupper():
            return m.group(0)  # "the present volume I brought": a pronoun unless it is "Volume I"
        return f" {_cardinal(_roman_value(numeral))}{possessive}"
    if not (word[:1].isupper() and word[1:].islower()):
        return m.group(0)
    if word not in _REGNAL_NAMES and (
        len(numeral) < 2 or set(numeral) - set("IVX") or _roman_value(numeral) > 39
    ):
        return m.group(0)
    return f" the {_ordinal(_roman_value(numeral))}{possessive}"


def _is_shouting(text: str) -> bool:
    """Whether the text is written in capitals ("STOP THE PRESSES"): its capital words are words."""
    capitals = len(_CAPITAL_WORD.findall(text))
    return capitals >= 3 and 5 * capitals >= 3 * len(text.split())


def _acronyms(text: str, shouting: bool) -> str:
    if not _ACRONYM.search(text):
        return text

    def say(m: re.Match) -> str:
        word, suffix = m.group(0)[0] + m.group(1), m.group(2) or ""
        if word in _READ_ACRONYMS or (
            word not in _SPELLED_ACRONYMS and (shouting or len(word) >= 5) and _pronounceable(word)
        ):
            return word.lower() + suffix
        return " ".join(word.lower()) + ("'s" if suffix else "")

    return _ACRONYM.sub(say, text)


def _numerals_and_acronyms(text: str) -> str:
    if not any("A" <= c <= "Z" for c in text):
        return text
    shouting = _is_shouting(text)  # before numerals become words
    text = _ROMAN_AFTER_WORD.sub(_say_roman, text)
    return _acronyms(text, shouting)


# --------------------------------------------------------------------------------------------
# Stage 7: symbols to words, then only vocabulary characters.

_SYMBOL_WORDS = str.maketrans({
    "&": " and ", "@": " at ", "+": " plus ", "=": " equals ", "#": " hash ", "%": " percent ",
    "/": " slash ", "$": " dollars ", _EURO: " euros ", _POUND: " pounds ",
    _YEN: " yen ", _RUPEE: " rupees ", _CENT: " cents ", _DEGREE: " degrees ",
})
_NOT_IN_VOCABULARY = re.compile(r"[^a-z '\-,.;:!?\"]+")
_LOOSE_HYPHEN = re.compile(r"-(?<![a-z]-)|-(?![a-z])")
_LOOSE_APOSTROPHE = re.compile(r"'(?<![a-z]')(?![a-z])")
_SPACES_BEFORE_MARK = re.compile(r" ([.,;:!?])(?=([a-z])?)")
_ANY_MARK_RUN = re.compile(r"[.,;:!?]{2,}")
_NO_SPACE_AFTER_MARK = re.compile(r"([,;:!?])(?=[a-z])")
_LEADING_MARKS = re.compile(r"^[ .,;:!?]+")
_LETTER = re.compile(r"[a-z]")


def _tidy(text: str) -> str:
    text = _NOT_IN_VOCABULARY.sub(" ", text.translate(_SYMBOL_WORDS).lower())
    if "-" in text:
        text = _LOOSE_HYPHEN.sub(" ", text)
    if "'" in text:
        text = _LOOSE_APOSTROPHE.sub(" ", text)
    text = _collapse_spaces(text)
    text = _SPACES_BEFORE_MARK.sub(_close_up, text)
    text = _ANY_MARK_RUN.sub(_strongest, text)
    text = _NO_SPACE_AFTER_MARK.sub(r"\1 ", text)
    text = _LEADING_MARKS.sub("", _collapse_spaces(text))
    return text if _LETTER.search(text) else ""


def normalize(text: str) -> str:
    """Rewrite English text as the words a reader would say, in the vocabulary's characters.

    Deterministic and idempotent; returns "" when nothing speakable remains (empty text, only
    symbols or emoji). Raises `TokttsError` only when `text` is not a `str`.

    The output is lowercase a-z, spaces and the marks of `PUNCTUATION`, never a digit:
    "The 3rd of May, 1997, cost $5.50" -> "the third of may, nineteen ninety-seven, cost five
    dollars and fifty cents".

    Known gaps, where a rule guesses or gives up: a bare four-digit number from 1100 to 2099 is
    read as a year ("1997 people" -> "nineteen ninety-seven people") unless a word like "over" or
    "about" comes before it; "St." before a capitalised word is always "saint"; numeric dates are
    month first unless the first field is over 12; "5 in" is not read as inches, "5 m" is meters;
    abbreviations need their capital ("mr. smith" stays "mr."), acronyms and Roman numerals theirs
    ("fbi", "chapter iv" are read as words); "Henry I" is "henry the first" even when "I" is the
    pronoun; only North American phone numbers and a fixed list of top-level domains are read, and
    a local number (555-1234) only after a word like "call", "phone" or "at".
    """
    if not isinstance(text, str):
        raise TokttsError(f"normalize expects a str, got {type(text).__name__}: {text!r:.80}")
    text = _to_ascii(text)
    if "@" in text:
        text = _EMAIL.sub(_say_address, text)
    if _URL_HINT.search(text):
        text = _URL.sub(_say_address, text)
    if _PHONE_HINT.search(text):
        text = _LOCAL_PHONE.sub(_say_local_phone, _PHONE.sub(_say_phone, text))
    text = _regular_punctuation(text)
    text = _numbers(text)
    if _URL_HINT.search(text):
        # Again: reading a number can uncover an address ("5$.com" -> "five dollars.com"), and a
        # second pass over the output must find nothing left to read.
        text = _URL.sub(_say_address, text)
    text = _abbreviations(text)
    text = _numerals_and_acronyms(text)
    return _tidy(text)


# --------------------------------------------------------------------------------------------
# A user's lexicon: words the model says wrongly, respelled the way they sound.


class Lexicon:
    """Whole words (any case) replaced by respellings before normalisation, since the model reads
    letters, not phonemes: `Lexicon({"Nguyen": "win", "SQL": "sequel"})("SQL by Nguyen")` ->
    "sequel by win". A file holds one entry per line, the word, then whitespace, then its
    respelling; blank lines and lines starting with # are skipped."""

    def __init__(self, entries: dict[str, str]):
        for word, respelling in entries.items():
            if not isinstance(word, str) or not isinstance(respelling, str) or not word.strip():
                raise TokttsError(f"a lexicon maps words to respellings (text to text), got {word!r}: {respelling!r}")
        self.entries = {w.strip().lower(): r.strip() for w, r in entries.items()}
        words = sorted(self.entries, key=len, reverse=True)  # the longest match first ("New York" over "New")
        alternatives = "|".join(re.escape(w) for w in words)
        # Whole words, possessives too ("Nguyen's"), not a piece of a longer word or contraction.
        boundary = r"(?=(?:'s)?(?![\w']))"
        self._pattern = re.compile(rf"(?<![\w'])(?:{alternatives}){boundary}", re.IGNORECASE) if words else None

    @classmethod
    def from_file(cls, path: str | Path) -> "Lexicon":
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise TokttsError(f"lexicon file {str(path)!r} not found") from None
        except UnicodeDecodeError as e:
            raise TokttsError(f"lexicon file {str(path)!r} is not UTF-8 (byte {e.start}); save it as UTF-8") from None
        except OSError as e:
            raise TokttsError(f"cannot read lexicon file {str(path)!r} ({e.strerror})") from None
        entries = {}
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split(None, 1)
            if len(fields) != 2:
                raise TokttsError(f"{str(path)}:{number}: {line!r} has no respelling; write the word, a space, "
                                  "then how to say it")
            entries[fields[0]] = fields[1]
        return cls(entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self.entries.get(m.group(0).lower(), m.group(0)), text)


# --------------------------------------------------------------------------------------------
# The character vocabulary.

PAD = "<pad>"
_DEFAULT_CHARS = (PAD, *PUNCTUATION, *"abcdefghijklmnopqrstuvwxyz")


class Vocab:
    """Characters to ids and back. Id 0 is padding; the others are the characters `normalize` emits.

    The character list is saved with every checkpoint (`list(vocab.chars)`) and given back to
    `Vocab(chars)` when loading, so a model keeps the ids it was trained with.
    """

    def __init__(self, chars: Sequence[str] | None = None) -> None:
        chars = tuple(_DEFAULT_CHARS if chars is None else chars)
        if not chars or chars[0] != PAD:
            raise TokttsError(f"a vocabulary starts with {PAD!r} (id 0), got {chars[:1]!r}")
        bad = [c for c in chars[1:] if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise TokttsError(f"vocabulary entries after {PAD!r} must be single characters: {bad[:5]!r}")
        if len(set(chars)) != len(chars):
            raise TokttsError(f"vocabulary has repeated characters: {sorted(chars)!r}")
        self.chars: tuple[str, ...] = chars
        self.pad_id = 0
        self._ids = {c: i for i, c in enumerate(chars) if i != self.pad_id}
        # Out-of-vocabulary characters seen so far and what they map to, so that each distinct
        # dropped character is reported once rather than once per sentence of a corpus.
        self._mapped: dict[str, tuple[int, ...]] = {}

    def __len__(self) -> int:
        return len(self.chars)

    def __repr__(self) -> str:
        return f"Vocab({''.join(self.chars[1:])!r}, size={len(self)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and other.chars == self.chars

    def __hash__(self) -> int:
        return hash(self.chars)

    def encode(self, text: str) -> list[int]:
        """Ids of the characters of `text`, which should already be normalised.

        A character outside the vocabulary is mapped when the mapping is obvious (uppercase to
        lowercase, any whitespace to a space, an accented letter or typographic mark to its ASCII
        form) and dropped otherwise, with one logged warning per distinct dropped character.
        """
        ids: list[int] = []
        for c in text:
            i = self._ids.get(c)
            if i is not None:
                ids.append(i)
            else:
                ids.extend(self._map(c))
        return ids

    def _map(self, c: str) -> tuple[int, ...]:
        mapped = self._mapped.get(c)
        if mapped is not None:
            return mapped
        if c.isspace():
            candidates = " "
        elif c.lower() in self._ids:
            candidates = c.lower()
        elif unicodedata.category(c)[0] in "LP":  # letters and punctuation, not digits or symbols
            candidates = unidecode(c).lower()
        else:
            candidates = ""
        mapped = tuple(self._ids[x] for x in candidates if x in self._ids)
        if not candidates or len(mapped) != len(candidates):
            mapped = ()
            log.warning("no vocabulary character for %r (U+%04X): dropped; run the text through "
                        "toktts.text.normalize before encoding", c, ord(c))
        self._mapped[c] = mapped
        return mapped

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; padding ids are skipped."""
        out = []
        for raw in ids:
            i = operator.index(raw)
            if not 0 <= i < len(self.chars):
                raise TokttsError(f"token id {i} is outside the vocabulary (0..{len(self.chars) - 1}); "
                                  "was this model trained with a different vocabulary?")
            if i != self.pad_id:
                out.append(self.chars[i])
        return "".join(out)


VOCAB = Vocab()
"""The vocabulary of `normalize`'s output: `VOCAB.chars[0]` is padding, then space, marks, a-z."""
