"""Modifiers in Russian and English, called directly and from templates."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from mailer_core.rendering import modifiers
from mailer_core.rendering import sandbox as rendering
from mailer_core.rendering.modifiers import ModifierError


def nbsp(text: str) -> str:
    """babel groups digits with (narrow) no-break spaces; compare with plain ones."""
    return text.replace("\u00a0", " ").replace("\u202f", " ")


def render(source: str, locale: str = "ru", **context: object) -> str:
    return rendering.render_html(source, dict(context), locale=locale).text


# -- numbers in words --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "currency", "lang", "expected"),
    [
        (1250, "RUB", "ru", "одна тысяча двести пятьдесят рублей 00 копеек"),
        ("1251.01", "RUB", "ru", "одна тысяча двести пятьдесят один рубль 01 копейка"),
        (2, "RUB", "ru", "два рубля 00 копеек"),
        (Decimal("21.5"), "USD", "ru", "двадцать один доллар 50 центов"),
        (1250, "USD", "en", "one thousand, two hundred and fifty dollars 00 cents"),
        (1, "EUR", "en", "one euro 00 cents"),
    ],
)
def test_in_words_with_a_currency(value: object, currency: str, lang: str, expected: str) -> None:
    assert modifiers.in_words(value, currency=currency, lang=lang) == expected


def test_in_words_without_a_currency_and_with_cents_in_words() -> None:
    assert modifiers.in_words(1250, lang="ru") == "одна тысяча двести пятьдесят"
    assert modifiers.in_words(21, lang="en") == "twenty-one"
    assert modifiers.in_words("12,5", lang="en") == "twelve point five"
    assert modifiers.in_words(21, currency="USD", lang="en", cents="words") == "twenty-one dollars zero cents"


def test_amount_writes_digits_with_agreeing_currency_names() -> None:
    assert nbsp(modifiers.amount(1250, "RUB", lang="ru")) == "1 250 рублей 00 копеек"
    assert nbsp(modifiers.amount("3 001,02", "RUB", lang="ru")) == "3 001 рубль 02 копейки"
    assert modifiers.amount(1250.5, "USD", lang="en") == "1,250 dollars 50 cents"
    assert modifiers.amount(1, "USD", lang="en") == "1 dollar 00 cents"


def test_money_and_number_follow_the_locale() -> None:
    assert nbsp(modifiers.money(1250, "RUB", locale="ru")) == "1 250,00 ₽"
    assert modifiers.money(1250, "USD", locale="en_US") == "$1,250.00"
    assert nbsp(modifiers.number(1250.5, locale="ru")) == "1 250,5"
    assert modifiers.number(1250.5, 2, locale="en") == "1,250.50"


def test_the_render_locale_and_account_currency_are_the_defaults() -> None:
    assert nbsp(render("{{ 1250|money }}", locale="ru")) == "1 250,00 ₽"
    assert render("{{ 1250|money }}", locale="en_US") == "$1,250.00"
    out = rendering.render_html("{{ 5|money }}", {}, locale="en_US", currency="EUR").text
    assert out == "€5.00"
    assert nbsp(render('{{ price|in_words(currency="RUB") }}', price=1250)) == (
        "одна тысяча двести пятьдесят рублей 00 копеек"
    )


# -- dates ------------------------------------------------------------------------------------

MOMENT = datetime(2026, 11, 24, 21, 30, tzinfo=UTC)


def test_dates_by_locale_and_time_zone() -> None:
    assert modifiers.date_(date(2026, 11, 24), locale="ru") == "24.11.2026"
    assert nbsp(modifiers.date_(date(2026, 11, 24), "long", locale="ru")) == "24 ноября 2026 г."
    assert modifiers.date_(date(2026, 11, 24), "long", locale="en") == "November 24, 2026"
    assert modifiers.date_(date(2026, 11, 24), "dd/MM", locale="en") == "24/11"
    # 21:30 UTC is already the 25th in Moscow
    assert modifiers.date_(MOMENT, locale="ru", tz="Europe/Moscow") == "25.11.2026"
    assert modifiers.datetime_(MOMENT, locale="ru", tz="Europe/Moscow") == "25.11.2026 00:30"
    assert modifiers.date_("2026-11-24", "long", locale="en") == "November 24, 2026"
    assert modifiers.date_(1795478400, locale="ru") == "24.11.2026"  # unix time


def test_dates_print_in_the_render_locale_without_a_modifier() -> None:
    assert render("{{ d }}", locale="ru", d=date(2026, 11, 24)) == "24.11.2026"
    assert render("{{ d }}", locale="en", d=date(2026, 11, 24)) == "Nov 24, 2026"
    assert render("{{ yes }} {{ no }}", locale="ru", yes=True, no=False) == "Да Нет"
    assert render("{{ yes }}", locale="en", yes=True) == "Yes"


@pytest.mark.parametrize(
    ("source", "locale", "expected"),
    [
        # CLDR's long Russian date ends in the abbreviation «г.»: the sentence gets one full stop
        ('<p>Оно действует до {{ d|date("long") }}.</p>', "ru", "<p>Оно действует до 24 ноября 2026 г.</p>"),
        ('<p>Valid until {{ d|date("long") }}.</p>', "en", "<p>Valid until November 24, 2026.</p>"),
        ('{{ d|date("long") }} и {{ d|date("long") }}.', "ru", "24 ноября 2026 г. и 24 ноября 2026 г."),
        ('{% if d %}до {{ d|date("long") }}.{% endif %}', "ru", "до 24 ноября 2026 г."),
        ('до {{ d|date("long") }}, затем', "ru", "до 24 ноября 2026 г., затем"),
        ('до {{ d|date("long") }}...', "ru", "до 24 ноября 2026 г...."),  # an ellipsis stays whole
        ("{{ firm }}.", "en", "Smith &amp; Co."),
        ("{{ wait }}.", "en", "wait...."),
    ],
)
def test_a_value_ending_in_an_abbreviation_takes_the_sentences_full_stop(
    source: str, locale: str, expected: str
) -> None:
    context = {"d": date(2026, 11, 24), "firm": "Smith & Co.", "wait": "wait..."}
    assert nbsp(render(source, locale=locale, **context)) == expected


def test_a_subject_ending_in_an_abbreviation_gets_one_full_stop() -> None:
    subject = rendering.render_subject(
        'Оплата до {{ d|date("long") }}.', {"d": date(2026, 11, 24)}, locale="ru"
    )
    assert nbsp(subject.text) == "Оплата до 24 ноября 2026 г."


# -- declension, names, gender ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "dative", "genitive", "instrumental"),
    [
        ("Иван Петров", "Ивану Петрову", "Ивана Петрова", "Иваном Петровым"),
        ("Мария Иванова", "Марии Ивановой", "Марии Ивановой", "Марией Ивановой"),
        ("Петров Иван Сергеевич", "Петрову Ивану Сергеевичу", "Петрова Ивана Сергеевича", None),
        ("Ольга Смирнова", "Ольге Смирновой", "Ольги Смирновой", None),
    ],
)
def test_inflect_full_names(name: str, dative: str, genitive: str, instrumental: str | None) -> None:
    assert modifiers.inflect(name, "datv") == dative
    assert modifiers.inflect(name, "gent") == genitive
    assert modifiers.inflect(name, "дательный") == dative
    if instrumental:
        assert modifiers.inflect(name, "instrumental") == instrumental


def test_inflect_words_phrases_and_what_it_leaves_alone() -> None:
    assert modifiers.inflect("коммерческое предложение", "gent") == "коммерческого предложения"
    assert modifiers.inflect("договор", "loct", plural=True) == "договорах"
    assert modifiers.inflect("ООО «Ромашка»", "datv") == "ООО «Ромашка»"
    assert modifiers.inflect("John Smith", "datv") == "John Smith"
    assert render('{{ name|inflect("datv") }}', name="Иван Петров") == "Ивану Петрову"
    with pytest.raises(ModifierError, match="unknown case"):
        modifiers.inflect("Иван", "ergative")


@pytest.mark.parametrize(
    ("full", "first", "last", "middle"),
    [
        ("Иван Петров", "Иван", "Петров", ""),
        ("Петров Иван Сергеевич", "Иван", "Петров", "Сергеевич"),
        ("Смирнова Ольга", "Ольга", "Смирнова", ""),
        ("John Smith", "John", "Smith", ""),
        ("Smith, John", "John", "Smith", ""),
        ("Анна", "Анна", "", ""),
    ],
)
def test_name_parts(full: str, first: str, last: str, middle: str) -> None:
    assert modifiers.first_name(full) == first
    assert modifiers.last_name(full) == last
    assert modifiers.middle_name(full) == middle


def test_gender_picks_the_word_or_ending() -> None:
    assert modifiers.gender("Ольга Смирнова", "открыл", "открыла") == "открыла"
    assert modifiers.gender("Иван Петров", "открыл", "открыла") == "открыл"
    assert modifiers.gender("Петрова Анна Сергеевна", "Уважаемый", "Уважаемая") == "Уважаемая"
    assert modifiers.gender({"name": "Мария Иванова"}, "", "а") == "а"
    assert modifiers.gender({"gender": "masc", "name": "x"}, "he", "she") == "he"
    assert modifiers.gender("John Smith", "he", "she", "they") == "they"
    assert modifiers.gender("John Smith", "открыл", "открыла") == "открыл"
    assert render(
        'Вы {{ name|gender("открыли", "открыли") }} письмо, {{ name|first_name }}', name="Ольга"
    ) == ("Вы открыли письмо, Ольга")


# -- plurals and lists -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "word"),
    [(1, "день"), (2, "дня"), (5, "дней"), (11, "дней"), (21, "день"), (22, "дня"), (1.5, "дня")],
)
def test_russian_plural_agreement(count: float, word: str) -> None:
    assert modifiers.plural(count, "день", "дня", "дней", lang="ru") == word
    assert modifiers.plural(count, "день", lang="ru") == word  # pymorphy3 finds the form itself


@pytest.mark.parametrize(("count", "word"), [(0, "days"), (1, "day"), (2, "days"), (21, "days")])
def test_english_plural_agreement(count: int, word: str) -> None:
    assert modifiers.plural(count, "day", "days", lang="en") == word


def test_plural_with_the_number_and_in_templates() -> None:
    assert modifiers.plural(5, "день", "дня", "дней", number=True, lang="ru") == "5 дней"
    assert render('{{ n }} {{ n|plural("день", "дня", "дней") }}', n=2) == "2 дня"
    assert render('{{ n|plural("day", "days", number=True) }}', locale="en", n=1) == "1 day"
    with pytest.raises(ModifierError):
        modifiers.plural(2, "day", lang="en")


def test_join_values() -> None:
    values = ["Email marketing", "CRM", "Analytics"]
    assert modifiers.join_values(values) == "Email marketing, CRM, Analytics"
    assert modifiers.join_values(values, " / ") == "Email marketing / CRM / Analytics"
    assert modifiers.join_values(values, ", ", last=" и ") == "Email marketing, CRM и Analytics"
    assert modifiers.join_values(["one"], ", ", last=" and ") == "one"
    assert modifiers.join_values("single") == "single"
    assert render('{{ v|join_values(", ", last=" и ") }}', v=values) == "Email marketing, CRM и Analytics"


# -- missing values and bad input ------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ nothing|in_words }}",
        '{{ nothing|amount("RUB") }}',
        "{{ nothing|money }}",
        "{{ nothing|number }}",
        "{{ nothing|date }}",
        '{{ nothing|inflect("datv") }}',
        "{{ nothing|first_name }}",
        '{{ nothing|plural("день") }}',
        "{{ nothing|join_values }}",
    ],
)
def test_a_missing_value_passes_through_and_is_listed(source: str) -> None:
    rendered = rendering.render_html(source, {}, locale="ru")
    assert rendered.text == ""
    assert rendered.missing == ("nothing",)


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("{{ 'abc'|in_words }}", "expected a number"),
        ("{{ (10**20)|in_words }}", "out of range"),
        ('{{ 5|amount("XYZ") }}', "no names for the currency XYZ"),
        ('{{ 5|money("rubles") }}', "not a currency code"),
        ('{{ "x"|date }}', "expected a date"),
        ('{{ 5|plural("a", "b", "c", "d") }}', "one to three"),
        ("{{ 5|number(99) }}", "decimals"),
        ('{{ 1|money(locale="xx_YY") }}', "unknown locale"),
    ],
)
def test_bad_input_is_a_render_error_with_words(source: str, words: str) -> None:
    with pytest.raises(rendering.RenderError, match=words):
        rendering.render_html(source, {}, locale="ru")
