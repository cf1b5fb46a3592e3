"""Modifiers (Jinja2 filters) that Russian- and English-speaking CRM users need.

Each is a plain function whose first argument is the value before the `|`:

| filter | example | gives |
| --- | --- | --- |
| `in_words` | `{{ 1250|in_words(currency="RUB") }}` | одна тысяча двести пятьдесят рублей 00 копеек |
| `amount` | `{{ 1250|amount("RUB") }}` | 1 250 рублей 00 копеек |
| `money` | `{{ 1250|money("USD") }}` | $1,250.00 (babel, by locale) |
| `number` | `{{ 1250.5|number(2) }}` | 1 250,50 |
| `date`, `datetime` | `{{ lead.created_at|date("long") }}` | 24 ноября 2026 г. |
| `inflect` | `{{ contact.name|inflect("datv") }}` | Ивану Петрову |
| `first_name`, `last_name`, `middle_name` | `{{ "Петров Иван Сергеевич"|first_name }}` | Иван |
| `plural` | `{{ 5|plural("день", "дня", "дней") }}`, `{{ 5|plural("день") }}` | дней |
| `gender` | `{{ contact|gender("открыл", "открыла") }}` | открыла (for Ольга) |
| `join_values` | `{{ lead.cf["Interests"]|join_values(", ", last=" и ") }}` | A, B и C |

The well-kept libraries do the language work: num2words (numbers in words, currency
names), pymorphy3 with its Russian dictionaries (declension, gender, agreement with a
number), babel (CLDR money, number and date formats and plural rules). They are imported
inside the functions that need them, so importing this module costs nothing at a cold
start that does not render.

The language comes from the `locale` argument, else from the render's locale
(`current_locale`, set by rendering.py), e.g. "ru", "en", "en_US". A missing value
(jinja2.Undefined) passes through every modifier unchanged, so the preview still names it
as missing. Bad arguments raise `ModifierError` with words a user can act on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from jinja2 import Undefined

if TYPE_CHECKING:
    from babel import Locale
    from pymorphy3 import MorphAnalyzer
    from pymorphy3.analyzer import Parse

current_locale: ContextVar[str] = ContextVar("current_locale", default="en")
current_timezone: ContextVar[str] = ContextVar("current_timezone", default="UTC")
current_currency: ContextVar[str | None] = ContextVar("current_currency", default=None)

MAX_ABS_NUMBER = Decimal(10) ** 15  # a quadrillion: beyond any CRM budget, within every library
_CYRILLIC_WORD = re.compile(r"[А-Яа-яЁё]+")
_QUOTED = re.compile(r'«[^»]*»|"[^"]*"|“[^”]*”|„[^“”]*[“”]')
_SLAVIC = {"ru", "uk", "be"}
_DEFAULT_CURRENCY = {"ru": "RUB", "uk": "UAH", "be": "BYN", "kk": "KZT"}
_DATE_DEFAULTS = {"ru": ("dd.MM.yyyy", "dd.MM.yyyy HH:mm")}
CASES = {
    "nomn": "nomn",
    "gent": "gent",
    "datv": "datv",
    "accs": "accs",
    "ablt": "ablt",
    "loct": "loct",
    "voct": "voct",
    "nominative": "nomn",
    "genitive": "gent",
    "dative": "datv",
    "accusative": "accs",
    "instrumental": "ablt",
    "prepositional": "loct",
    "vocative": "voct",
    "именительный": "nomn",
    "родительный": "gent",
    "дательный": "datv",
    "винительный": "accs",
    "творительный": "ablt",
    "предложный": "loct",
    "им": "nomn",
    "рд": "gent",
    "дт": "datv",
    "вн": "accs",
    "тв": "ablt",
    "пр": "loct",
}


class ModifierError(ValueError):
    """A modifier cannot do what the template asks; the message says why."""


# -- shared helpers ------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    return isinstance(value, Undefined)


def _lang(locale: str | None = None) -> str:
    code = (locale or current_locale.get() or "en").replace("-", "_")
    return code.split("_", 1)[0].lower()


@cache
def _babel_locale(code: str) -> Locale:
    from babel import Locale, UnknownLocaleError

    try:
        return Locale.parse(code.replace("-", "_"))
    except (UnknownLocaleError, ValueError) as exc:
        raise ModifierError(f"unknown locale {code!r}") from exc


def _locale(locale: str | None) -> Locale:
    return _babel_locale(locale or current_locale.get() or "en")


@cache
def _morph() -> MorphAnalyzer:
    import pymorphy3

    return pymorphy3.MorphAnalyzer(lang="ru")


@lru_cache(maxsize=20_000)
def _parses(word: str) -> tuple[Parse, ...]:
    """pymorphy3's analyses of a word, kept: names and words repeat across a mailing."""
    return tuple(_morph().parse(word))


def to_decimal(value: Any, what: str = "number") -> Decimal:
    """A number from an int, float, Decimal or text such as "150 000", "1250,50" or "12"."""
    if isinstance(value, bool):
        raise ModifierError(f"expected a {what}, got a yes/no value")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int | float):
        number = Decimal(str(value))
    elif isinstance(value, str):
        text = re.sub(r"[\s\u00a0\u202f']", "", value).replace(",", ".")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ModifierError(f"expected a {what}, got {value[:40]!r}") from None
    else:
        raise ModifierError(f"expected a {what}, got {type(value).__name__}")
    if not number.is_finite() or abs(number) >= MAX_ABS_NUMBER:
        raise ModifierError(f"the {what} is out of range")
    return number


def _currency(currency: str | None, lang: str) -> str:
    code = (currency or current_currency.get() or _DEFAULT_CURRENCY.get(lang, "USD")).upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise ModifierError(f"{currency!r} is not a currency code like RUB or USD")
    return code


def _converter(lang: str) -> Any:
    from num2words import CONVERTER_CLASSES

    for code in (current_locale.get(), lang):
        if code in CONVERTER_CLASSES and code.split("_")[0] == lang:
            return code, CONVERTER_CLASSES[code]
    raise ModifierError(f"numbers in words are not available in {lang!r}")


def _keep_case(original: str, word: str) -> str:
    if len(original) > 1 and original.isupper():
        return word.upper()
    if original[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


# -- numbers ---------------------------------------------------------------------------------


def in_words(value: Any, currency: str | None = None, lang: str | None = None, cents: str = "digits") -> Any:
    """The number in words; with a currency, "одна тысяча двести пятьдесят рублей 00 копеек".

    `cents="digits"` (the default, as invoices write it) or `"words"`.
    """
    if _missing(value):
        return value
    from num2words import num2words

    language = _lang(lang)
    code, _ = _converter(language)
    number = to_decimal(value)
    if cents not in ("digits", "words"):
        raise ModifierError('cents must be "digits" or "words"')
    if currency is None:
        if number == number.to_integral_value():
            return num2words(int(number), lang=code)
        return num2words(number, lang=code)
    unit = _currency(currency, language)
    try:
        return num2words(
            number.quantize(Decimal("0.01")),
            lang=code,
            to="currency",
            currency=unit,
            cents=cents == "words",
            separator="",
        )
    except NotImplementedError:
        raise ModifierError(f"no words for the currency {unit} in {language!r}") from None


def amount(value: Any, currency: str | None = None, lang: str | None = None) -> Any:
    """Digits with the currency's names agreed: "1 250 рублей 00 копеек", "1,250 dollars 00 cents"."""
    if _missing(value):
        return value
    from babel.numbers import format_decimal

    language = _lang(lang)
    code, converter = _converter(language)
    unit = _currency(currency, language)
    forms = getattr(converter, "CURRENCY_FORMS", {}).get(unit)
    if not forms:
        raise ModifierError(f"no names for the currency {unit} in {language!r}")
    number = to_decimal(value).quantize(Decimal("0.01"))
    whole, fraction = divmod(abs(number), 1)
    whole_int, cents_int = int(whole), int(fraction * 100)
    sign = "-" if number < 0 else ""
    digits = format_decimal(whole_int, locale=_babel_locale(code))
    major = converter.pluralize(whole_int, forms[0])
    minor = converter.pluralize(cents_int, forms[1])
    return f"{sign}{digits} {major} {cents_int:02d} {minor}"


def money(
    value: Any, currency: str | None = None, locale: str | None = None, format: str | None = None
) -> Any:
    """The amount as the locale writes money: "1 250,00 ₽" (ru), "$1,250.00" (en_US)."""
    if _missing(value):
        return value
    from babel.numbers import format_currency

    loc = _locale(locale)
    return format_currency(to_decimal(value), _currency(currency, loc.language), format=format, locale=loc)


def number(value: Any, decimals: int | None = None, locale: str | None = None) -> Any:
    """The number with the locale's grouping and decimal sign: "1 250,5" (ru), "1,250.5" (en)."""
    if _missing(value):
        return value
    from babel.numbers import format_decimal

    amount_ = to_decimal(value)
    if decimals is None:
        return format_decimal(amount_, locale=_locale(locale))
    if not isinstance(decimals, int) or not 0 <= decimals <= 6:
        raise ModifierError("decimals must be a whole number from 0 to 6")
    pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
    return format_decimal(amount_, format=pattern, locale=_locale(locale))


# -- dates -----------------------------------------------------------------------------------


def _timezone(tz: str | None) -> tzinfo:
    from babel.dates import get_timezone

    name = tz or current_timezone.get() or "UTC"
    try:
        return get_timezone(name)
    except LookupError:
        raise ModifierError(f"unknown time zone {name!r}") from None


def to_datetime(value: Any) -> datetime | date:
    """A date or an aware datetime from a date, datetime, unix time or ISO 8601 text."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return value
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            raise ModifierError("the time is out of range") from None
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return to_datetime(int(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ModifierError(f"expected a date, got {value[:40]!r}") from None
        if len(text) <= 10:
            return parsed.date()
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ModifierError(f"expected a date, got {type(value).__name__}")


def _pattern(format: str | None, locale: str | None, which: int) -> str:
    if format:
        return format
    return _DATE_DEFAULTS.get(_lang(locale), ("medium", "medium"))[which]


def date_(value: Any, format: str | None = None, locale: str | None = None, tz: str | None = None) -> Any:
    """The date as the locale writes it: "short", "medium", "long", "full" or a CLDR pattern."""
    if _missing(value):
        return value
    from babel.dates import format_date

    moment = to_datetime(value)
    day = moment.astimezone(_timezone(tz)).date() if isinstance(moment, datetime) else moment
    return format_date(day, _pattern(format, locale, 0), locale=_locale(locale))


def datetime_(value: Any, format: str | None = None, locale: str | None = None, tz: str | None = None) -> Any:
    """Date and time in the render's time zone (or `tz`), as the locale writes them."""
    if _missing(value):
        return value
    from babel.dates import format_datetime

    moment = to_datetime(value)
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return format_datetime(moment, _pattern(format, locale, 1), tzinfo=_timezone(tz), locale=_locale(locale))


# -- Russian grammar -------------------------------------------------------------------------


def _name_gender(words: Iterable[str]) -> str | None:
    """masc or femn from a first name or a patronymic among `words`; None when unsure."""
    for word in words:
        for parse in _parses(word):
            tag = parse.tag
            if parse.score < 0.2 or "nomn" not in tag:
                continue
            if ("Patr" in tag or "Name" in tag) and tag.gender in ("masc", "femn"):
                return str(tag.gender)
    return None


def _best_parse(word: str, gender: str | None, as_name: bool) -> Parse | None:
    parses = [p for p in _parses(word) if "nomn" in p.tag]
    if not parses:
        return None
    if as_name and gender:
        named = [p for p in parses if p.tag.gender == gender and ({"Name", "Surn", "Patr"} & p.tag.grammemes)]
        if named:
            return named[0]
    return parses[0]


def inflect(value: Any, case: str, plural: bool = False) -> Any:
    """A Russian word, phrase or full name in a grammatical case: Иван Петров → Ивану Петрову.

    Cases: nomn, gent, datv, accs, ablt, loct, voct (or their English or Russian names).
    Words in «quotes» (company names) and words not in Cyrillic are kept as they are.
    """
    if _missing(value):
        return value
    grammeme = CASES.get(str(case).strip().lower())
    if grammeme is None:
        raise ModifierError(f"unknown case {case!r}; use one of nomn, gent, datv, accs, ablt, loct")
    text = str(value)
    if not _CYRILLIC_WORD.search(text):
        return text
    words = _CYRILLIC_WORD.findall(text)
    gender = _name_gender(words)
    wanted = {grammeme, "plur"} if plural else {grammeme}
    quoted = [m.span() for m in _QUOTED.finditer(text)]
    out: list[str] = []
    position = 0
    for match in _CYRILLIC_WORD.finditer(text):
        out.append(text[position : match.start()])
        word = match.group(0)
        position = match.end()
        if any(start < match.start() < end for start, end in quoted):
            out.append(word)
            continue
        parse = _best_parse(word, gender, as_name=gender is not None)
        changed = parse.inflect(wanted) if parse is not None else None
        out.append(_keep_case(word, changed.word) if changed is not None else word)
    out.append(text[position:])
    return "".join(out)


def _name_parts(value: str) -> tuple[str | None, str | None, str | None]:
    """(first, middle, last) from a full name in either order; None for what is not there."""
    words = [w.strip(",") for w in value.split() if w.strip(",")]
    if not words:
        return None, None, None
    if not any(_CYRILLIC_WORD.fullmatch(w) for w in words):
        if "," in value:  # "Smith, John"
            surname, _, rest = value.partition(",")
            rest_words = rest.split()
            return (rest_words[0] if rest_words else None), None, surname.strip() or None
        if len(words) == 1:
            return words[0], None, None
        return words[0], (" ".join(words[1:-1]) or None), words[-1]
    first: str | None = None
    middle: str | None = None
    last: str | None = None
    for word in words:
        tags = [p.tag for p in _parses(word) if p.score >= 0.05 and "nomn" in p.tag]
        if first is None and any("Name" in t for t in tags):
            first = word
        elif middle is None and any("Patr" in t for t in tags):
            middle = word
        elif last is None and any("Surn" in t for t in tags):
            last = word
    if first is None:
        first = words[0] if words[0] not in (middle, last) else None
    if last is None:
        others = [w for w in words if w not in (first, middle)]
        last = others[0] if others else None
    return first, middle, last


def first_name(value: Any) -> Any:
    """The first name from a full name: "Петров Иван Сергеевич" → Иван, "John Smith" → John."""
    if _missing(value):
        return value
    return _name_parts(str(value))[0] or ""


def middle_name(value: Any) -> Any:
    if _missing(value):
        return value
    return _name_parts(str(value))[1] or ""


def last_name(value: Any) -> Any:
    if _missing(value):
        return value
    return _name_parts(str(value))[2] or ""


def detect_gender(name: str) -> str | None:
    """ "masc", "femn" or None, from the first name or patronymic in a (Russian) full name."""
    words = _CYRILLIC_WORD.findall(name or "")
    return _name_gender(words) if words else None


def gender(value: Any, masc: str, femn: str, unknown: str | None = None) -> str:
    """One of two words (or endings) by the gender of a contact or a name.

    `{{ contact|gender("открыл", "открыла") }}`; when the gender cannot be told (no
    Russian first name or patronymic), `unknown` if given, else the masculine form.
    """
    found: Any = None
    if isinstance(value, Mapping):
        found = value.get("gender")
        if found is None or _missing(found):
            name = value.get("name")
            found = detect_gender(str(name)) if isinstance(name, str) else None
    elif isinstance(value, str):
        found = detect_gender(value)
    if found == "femn":
        return femn
    if found == "masc":
        return masc
    return masc if unknown is None else unknown


def plural(value: Any, *forms: str, number: bool = False, lang: str | None = None) -> Any:
    """The word that agrees with a number: `5|plural("день", "дня", "дней")` → дней.

    Give the forms for one, few and many (Russian) or one and other (English); or one
    Russian word in the nominative and pymorphy3 finds the agreeing form itself.
    `number=True` puts the number in front: "5 дней".
    """
    if _missing(value):
        return value
    if not forms or len(forms) > 3:
        raise ModifierError("give one to three word forms")
    count = to_decimal(value)
    language = _lang(lang)
    whole = count == count.to_integral_value()
    if len(forms) == 1:
        word = forms[0]
        if not _CYRILLIC_WORD.fullmatch(word):
            raise ModifierError("give the singular and plural forms, e.g. plural('day', 'days')")
        parse = _best_parse(word, None, as_name=False) or _parses(word)[0]
        agreed = parse.make_agree_with_number(int(abs(count))) if whole else parse.inflect({"gent", "sing"})
        chosen = _keep_case(word, agreed.word) if agreed is not None else word
    else:
        category = _babel_locale(language).plural_form(abs(count) if not whole else int(abs(count)))
        if language in _SLAVIC and len(forms) == 3:
            index = {"one": 0, "few": 1, "many": 2}.get(category, 1)
        else:
            index = 0 if category == "one" else len(forms) - 1
        chosen = forms[index]
    if not number:
        return chosen
    shown = number_text(count, language)
    return f"{shown} {chosen}"


def number_text(count: Decimal, language: str) -> str:
    from babel.numbers import format_decimal

    return format_decimal(count, locale=_babel_locale(language))


def join_values(value: Any, sep: str = ", ", last: str | None = None) -> Any:
    """The values of a multi-select (or any list) joined: `join_values(", ", last=" и ")`."""
    if _missing(value):
        return value
    if isinstance(value, str | bytes) or not isinstance(value, Iterable) or isinstance(value, Mapping):
        return str(value)
    items = [str(v) for v in value if v is not None and not _missing(v) and str(v) != ""]
    if last is not None and len(items) > 1:
        return sep.join(items[:-1]) + last + items[-1]
    return sep.join(items)


# -- how plain values print ------------------------------------------------------------------

_YES_NO = {"ru": ("Да", "Нет"), "en": ("Yes", "No")}


def default_text(value: Any) -> Any:
    """How a value prints without a modifier: dates and yes/no in the render's locale."""
    if value is None:
        return ""
    if isinstance(value, bool):
        yes, no = _YES_NO.get(_lang(), _YES_NO["en"])
        return yes if value else no
    if isinstance(value, datetime):
        return datetime_(value)
    if isinstance(value, date):
        return date_(value)
    return value


FILTERS: dict[str, Any] = {
    "in_words": in_words,
    "amount": amount,
    "money": money,
    "number": number,
    "date": date_,
    "datetime": datetime_,
    "inflect": inflect,
    "first_name": first_name,
    "middle_name": middle_name,
    "last_name": last_name,
    "gender": gender,
    "plural": plural,
    "join_values": join_values,
}
