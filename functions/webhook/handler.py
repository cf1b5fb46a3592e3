"""Kommo callbacks: install (OAuth), uninstall, the digital pipeline, Salesbot steps, health."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext
from mailer_core.base.logs import logger
from mailer_core.kommo_hooks.install import InstallPage, receive_install

app = APIGatewayHttpResolver()
# The page carries nothing to cache, and the code in its URL must not leak through a Referer.
_PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@app.not_found
def not_found(_: Exception) -> Response[str]:
    """A path no hook takes: the API's error body, not Powertools' default."""
    from mailer_core.base.errors import NotFound
    from mailer_core.web import edge

    return edge.json_response(404, NotFound("no hook takes this path", field="path").to_body())


@app.get("/hooks/health")
def health() -> dict[str, str]:
    return {"status": "ok", "function": "webhook"}


@app.get("/hooks/kommo/install")
def kommo_install() -> Response[str]:
    params = {k: v for k, v in (app.current_event.query_string_parameters or {}).items() if v is not None}
    try:
        page = receive_install(params)
    except Exception:
        logger.exception("Kommo install redirect failed")
        page = InstallPage(
            503, "Mailer was not connected", "Something went wrong on our side. Please try again."
        )
    return Response(
        status_code=page.status,
        content_type="text/html; charset=utf-8",
        body=page.html,
        headers=dict(_PAGE_HEADERS),
    )


@app.get("/hooks/kommo/uninstall")
def kommo_uninstall() -> Response[str]:
    """Kommo's hook when the integration is switched off in an account (signed with the secret)."""
    from mailer_core.base.errors import MailerError
    from mailer_core.kommo_hooks import uninstall as account_lifecycle
    from mailer_core.web import edge

    params = {k: v for k, v in (app.current_event.query_string_parameters or {}).items() if v is not None}
    try:
        return edge.json_response(200, account_lifecycle.receive_uninstall_hook(params))
    except MailerError as exc:
        logger.warning("Kommo uninstall hook refused", extra={"status": exc.status, "reason": exc.message})
        return edge.json_response(exc.status, exc.to_body())


@app.post("/hooks/kommo/dp")
def kommo_digital_pipeline() -> Response[str]:
    """The digital pipeline's Mailer action (kommo_hooks.digital_pipeline): 202 and queued, at once."""
    from mailer_core.kommo_hooks import digital_pipeline

    return _hook_answer("digital pipeline", digital_pipeline.receive)


@app.post("/hooks/kommo/salesbot")
def kommo_salesbot() -> Response[str]:
    """A Salesbot `widget_request` step (kommo_hooks.salesbot): 200 within Kommo's 2 s, then queued."""
    from mailer_core.kommo_hooks import salesbot

    return _hook_answer("Salesbot", salesbot.receive)


def _hook_answer(name: str, receive: Callable[[bytes, str | None], Any]) -> Response[str]:
    from mailer_core.base.errors import MailerError
    from mailer_core.kommo_hooks import bracket_form
    from mailer_core.web import edge

    event = app.current_event
    try:
        raw = bracket_form.raw_body(event.body, is_base64=bool(event.is_base64_encoded))
        answer = receive(raw, event.headers.get("content-type"))
    except MailerError as exc:
        if exc.status >= 500:
            logger.exception(f"Kommo {name} hook failed")
        else:
            logger.info(f"Kommo {name} hook refused", extra={"status": exc.status, "reason": exc.message})
        return edge.json_response(exc.status, exc.to_body())
    except Exception:
        logger.exception(f"Kommo {name} hook failed")
        return edge.json_response(503, {"error": "unavailable", "message": "try again later"})
    return edge.json_response(answer.status, answer.body)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
