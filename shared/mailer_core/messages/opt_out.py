"""The public unsubscribe route of a campaign email (/u/{token}, docs/opt-out.md).

- `GET` (and `HEAD`) shows a page with one button, a form that POSTs to the same URL. It never
  unsubscribes anyone: mail security gateways and link scanners fetch every link of an email.
- `POST` unsubscribes at once, whatever its body: RFC 8058's one-click POST
  (`List-Unsubscribe=One-Click`, form-encoded or multipart) from a mail client, or the page's
  button. The email's To addresses go on the suppression list with reason `opted_out`
  (`suppressions.record`, one report per message: a second POST counts nothing again); then
  one conditional write on the message sets `opted_out_at` and lists `opted_out` on its
  timeline; the write that sets it calls `message_events.on_message_opted_out`, so the hook
  runs once however often the URL is posted. The answer is the same page each time.
- A campaign's Send Test email (origin `store.models.CAMPAIGN_TEST_ORIGIN`) shows the same pages, but
  its POST suppresses no one and records nothing: the manager who tries the link stays subscribed.
- A token that does not verify (forged, altered, cut short) answers 404 with a page that says
  so; a storage failure answers 503 (a client's one-click POST is retried).

The pages speak the email's language (its locale), else the browser's (Accept-Language), else
English. Nothing here renders, sends or calls Kommo: the track function stays small. A tag or a
note on the Kommo contact is the actions function's (automation.runner), announced by the hook.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailer_core.base.logs import logger
from mailer_core.events import message_events
from mailer_core.messages import suppressions
from mailer_core.store import timeline
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import CAMPAIGN_TEST_ORIGIN, MessageModel
from mailer_core.tracking import tokens
from mailer_core.tracking.record import update_message
from mailer_core.triggers.link_clicks import language

REASON = "opted_out"  # the person asked: no delivery report's reason (bounces.classify)
WORDS = "unsubscribed through the email's link"

# (title, text[, button]) per page and language; link_clicks.LANGUAGES decides which exist.
_PAGES: dict[str, dict[str, tuple[str, ...]]] = {
    "confirm": {
        "en": ("Unsubscribe", "Do you want to stop receiving these emails?", "Unsubscribe"),
        "ru": ("Отписка", "Вы хотите отписаться от этих писем?", "Отписаться"),
        "es": ("Darse de baja", "¿Quiere dejar de recibir estos correos?", "Darse de baja"),
        "pt": ("Cancelar inscrição", "Deseja deixar de receber estes e-mails?", "Cancelar inscrição"),
    },
    "done": {
        "en": (
            "You are unsubscribed",
            "You will not receive these emails any more. You can close this page.",
        ),
        "ru": ("Вы отписаны", "Эти письма больше не будут приходить. Страницу можно закрыть."),
        "es": ("Se ha dado de baja", "Ya no recibirá estos correos. Puede cerrar esta página."),
        "pt": ("Inscrição cancelada", "Você não receberá mais estes e-mails. Pode fechar esta página."),
    },
    "invalid": {
        "en": (
            "Link not valid",
            "This unsubscribe link is not valid. Open the link from the email as it is.",
        ),
        "ru": (
            "Ссылка недействительна",
            "Эта ссылка для отписки недействительна. Откройте ссылку из письма целиком.",
        ),
        "es": (
            "Enlace no válido",
            "Este enlace para darse de baja no es válido. Abra el enlace del correo tal como está.",
        ),
        "pt": (
            "Link inválido",
            "Este link de cancelamento não é válido. Abra o link do e-mail tal como está.",
        ),
    },
    "error": {
        "en": (
            "Something went wrong",
            "We could not unsubscribe you just now. Please try again in a few minutes.",
        ),
        "ru": (
            "Что-то пошло не так",
            "Не удалось отписать вас прямо сейчас. Попробуйте ещё раз через несколько минут.",
        ),
        "es": ("Algo salió mal", "No pudimos darle de baja ahora. Inténtelo de nuevo en unos minutos."),
        "pt": (
            "Algo deu errado",
            "Não foi possível cancelar sua inscrição agora. Tente novamente em alguns minutos.",
        ),
    },
}
_STYLE = (
    "body{margin:0;font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#222;"
    "background:#f5f6f8;display:flex;min-height:100vh;align-items:center;justify-content:center;"
    "text-align:center}main{max-width:32rem;padding:1.5rem}h1{font-size:2rem;margin:0 0 .75rem}"
    "p{color:#555;margin:0 0 1.5rem}button{font:inherit;font-size:1.1rem;padding:.7rem 1.8rem;"
    "border:0;border-radius:.4rem;background:#c62828;color:#fff;cursor:pointer}"
)
_ATTRIBUTES = ["account_id", "message_id", "to", "locale", "mailbox_id", "campaign_id", "user_id", "origin"]


@dataclass(frozen=True)
class Answer:
    """The route's answer: an HTTP status and its HTML page."""

    status: int
    page: str


def page(kind: str, lang: str) -> str:
    """One of the route's pages (confirm, done, invalid, error) in `lang`, English if unknown."""
    words = _PAGES[kind].get(lang) or _PAGES[kind]["en"]
    title, text = html.escape(words[0]), html.escape(words[1])
    form = ""
    if kind == "confirm":  # no action: the form POSTs to the very URL the page was fetched from
        form = (
            '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
            f'<button type="submit">{html.escape(words[2])}</button></form>'
        )
    return (
        f'<!doctype html><html lang="{html.escape(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex, nofollow">'
        f"<title>{title}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{title}</h1><p>{text}</p>{form}</main></body></html>"
    )


def handle(token_text: str, *, method: str, accept_language: str, now: datetime) -> Answer:
    """GET/HEAD: the page with the button; POST: unsubscribe (once) and say so; 404 for a bad
    token or a message that is gone; 503 when storage fails."""
    token = tokens.verify(token_text, kind=tokens.UNSUBSCRIBE)
    if token is None:
        return Answer(404, page("invalid", language(None, accept_language)))
    try:
        message = MessageModel.get(
            token.account_id, token.message_id, consistent_read=True, attributes_to_get=_ATTRIBUTES
        )
    except DoesNotExist:
        return Answer(404, page("invalid", language(None, accept_language)))
    except Exception:
        logger.exception("unsubscribe: the message could not be read", extra={"message_id": token.message_id})
        return Answer(503, page("error", language(None, accept_language)))
    lang = language(message.locale, accept_language)
    if method.upper() != "POST":
        return Answer(200, page("confirm", lang))
    if message.origin == CAMPAIGN_TEST_ORIGIN:  # a Send Test: the pages as they will be, no one suppressed
        return Answer(200, page("done", lang))
    try:
        opt_out(message, now)
    except Exception:
        logger.exception("unsubscribe not recorded", extra={"message_id": token.message_id})
        return Answer(503, page("error", lang))
    return Answer(200, page("done", lang))


def addresses_of(message: MessageModel) -> list[str]:
    """Who opts out: the email's To addresses (a campaign email's recipient). Cc and Bcc are
    copies to others (a colleague), who did not ask."""
    return list(dict.fromkeys(suppressions.normalize(str(a)) for a in message.to or [] if "@" in str(a)))


def opt_out(message: MessageModel, now: datetime) -> bool:
    """Suppress the email's recipients and record it on the message; True the first time (the
    hook ran). The suppressions come first: a retry after a failure between the two writes
    finds them counted and writes the message's record then."""
    addresses = addresses_of(message)
    report = suppressions.Report(
        key=f"opt-out#{message.message_id}",
        reason=REASON,
        decision="suppress",
        at=now,
        words=WORDS,
        message_id=message.message_id,
        mailbox_id=message.mailbox_id,
    )
    for address in addresses:
        suppressions.record(int(message.account_id), address, report)
    entry = timeline.entry(now, timeline.OPTED_OUT, f"unsubscribed: {', '.join(addresses)}")
    try:
        update_message(  # answering nothing: the body stays in the table
            int(message.account_id),
            message.message_id,
            [MessageModel.opted_out_at.set(now), timeline.history_append(entry)],
            MessageModel.message_id.exists() & MessageModel.opted_out_at.does_not_exist(),
            "NONE",
        )
    except UpdateError as exc:
        if is_condition_failure(exc):
            return False  # recorded before (or the message is gone): nothing more to do
        raise
    logger.info(
        "recipient opted out", extra={"message_id": message.message_id, "campaign_id": message.campaign_id}
    )
    message_events.on_message_opted_out(message, now)
    return True
