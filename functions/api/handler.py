"""The widget's HTTPS API: translates API Gateway (HTTP API) events into core calls.

Each route imports the core module it calls when it runs: a cold start pays only for the
modules of the route it serves (bench/cold_import.py measures this handler's import).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from mailer_core.base.logs import logger
from mailer_core.web import edge, openapi

app = APIGatewayHttpResolver()
app.use(middlewares=[edge.api_middleware])


@app.not_found
def not_found(_: Exception) -> Response[str]:
    """A path no route takes, or an id in the path that is not of its route's form: the API's
    error body, after the token check every protected route has (edge.api_middleware)."""
    return edge.not_found(app)


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/openapi.json")
def openapi_document() -> Response[str]:
    return Response(status_code=200, content_type="application/json", body=openapi.document_text())


@app.route("/v1/.+", method=["OPTIONS"])
def preflight() -> Response[str]:
    return Response(status_code=204, body="")  # answered by the middleware


@app.get("/v1/me")
def who_am_i() -> dict[str, Any]:
    caller = edge.caller_of(app)
    return {
        "account_id": caller.account_id,
        "subdomain": caller.subdomain,
        "user_id": caller.user_id,
        "is_admin": caller.is_admin,
    }


@app.get("/v1/settings")
def get_settings() -> dict[str, Any]:
    from mailer_core.accounts import settings_api

    return settings_api.get(edge.caller_of(app))


@app.patch("/v1/settings")
def update_settings() -> dict[str, Any]:
    from mailer_core.accounts import settings_api

    return settings_api.update(edge.caller_of(app), edge.json_body(app))


@app.get("/v1/preferences")
def get_preferences() -> dict[str, Any]:
    from mailer_core.accounts import preferences

    caller = edge.caller_of(app)
    return preferences.view(caller.account_id, caller.user_id)


@app.patch("/v1/preferences")
def update_preferences() -> dict[str, Any]:
    from mailer_core.accounts import preferences

    caller = edge.caller_of(app)
    return preferences.update(caller.account_id, caller.user_id, edge.json_body(app))


@app.get("/v1/mailboxes")
def list_mailboxes() -> dict[str, Any]:
    from mailer_core.mailboxes import api as mailboxes

    return {"items": mailboxes.list_for(edge.caller_of(app))}


@app.post("/v1/mailboxes")
def create_mailbox() -> Response[str]:
    from mailer_core.mailboxes import api as mailboxes

    return edge.json_response(201, mailboxes.create(edge.caller_of(app), edge.json_body(app)))


@app.get("/v1/mailboxes/<mailbox_id>")
def get_mailbox(mailbox_id: str) -> dict[str, Any]:
    from mailer_core.mailboxes import api as mailboxes

    return mailboxes.get(edge.caller_of(app), mailbox_id)


@app.patch("/v1/mailboxes/<mailbox_id>")
def update_mailbox(mailbox_id: str) -> dict[str, Any]:
    from mailer_core.mailboxes import api as mailboxes

    return mailboxes.update(edge.caller_of(app), mailbox_id, edge.json_body(app))


@app.delete("/v1/mailboxes/<mailbox_id>")
def delete_mailbox(mailbox_id: str) -> Response[str]:
    from mailer_core.mailboxes import api as mailboxes

    mailboxes.delete(edge.caller_of(app), mailbox_id)
    return Response(status_code=204, body="")


@app.get("/v1/mailboxes/presets")
def mailbox_presets() -> dict[str, Any]:
    from mailer_core.mailboxes import presets

    query = app.current_event.query_string_parameters or {}
    return presets.suggest((query.get("email") or "").strip())


@app.post("/v1/mailboxes/<mailbox_id>/check")
def check_mailbox(mailbox_id: str) -> dict[str, Any]:
    from mailer_core.mailboxes import api as mailboxes

    return mailboxes.check(edge.caller_of(app), mailbox_id)


@app.get("/v1/campaigns")
def list_campaigns() -> dict[str, Any]:
    from mailer_core.campaigns import api as campaigns

    return campaigns.list_for(edge.caller_of(app), app.current_event.query_string_parameters or {})


@app.post("/v1/campaigns")
def create_campaign() -> Response[str]:
    from mailer_core.campaigns import api as campaigns

    return edge.json_response(201, campaigns.create(edge.caller_of(app), edge.json_body(app)))


@app.get("/v1/campaigns/<campaign_id>")
def get_campaign(campaign_id: str) -> dict[str, Any]:
    from mailer_core.campaigns import api as campaigns

    return campaigns.get(edge.caller_of(app), campaign_id)


@app.patch("/v1/campaigns/<campaign_id>")
def update_campaign(campaign_id: str) -> dict[str, Any]:
    from mailer_core.campaigns import api as campaigns

    return campaigns.update(edge.caller_of(app), campaign_id, edge.json_body(app))


@app.delete("/v1/campaigns/<campaign_id>")
def delete_campaign(campaign_id: str) -> Response[str]:
    from mailer_core.campaigns import api as campaigns

    campaigns.delete(edge.caller_of(app), campaign_id)
    return Response(status_code=204, body="")


@app.post("/v1/campaigns/<campaign_id>/copy")
def copy_campaign(campaign_id: str) -> Response[str]:
    from mailer_core.campaigns import api as campaigns

    return edge.json_response(201, campaigns.copy(edge.caller_of(app), campaign_id))


@app.post("/v1/campaigns/<campaign_id>/start")
def start_campaign(campaign_id: str) -> dict[str, Any]:
    from mailer_core.campaigns import lifecycle

    body = edge.json_body(app) if app.current_event.body else {}
    return lifecycle.start(edge.caller_of(app), campaign_id, body)


@app.post("/v1/campaigns/<campaign_id>/pause")
def pause_campaign(campaign_id: str) -> dict[str, Any]:
    from mailer_core.campaigns import lifecycle

    return lifecycle.pause(edge.caller_of(app), campaign_id)


@app.post("/v1/campaigns/<campaign_id>/resume")
def resume_campaign(campaign_id: str) -> dict[str, Any]:
    from mailer_core.campaigns import lifecycle

    return lifecycle.resume(edge.caller_of(app), campaign_id)


@app.post("/v1/campaigns/<campaign_id>/cancel")
def cancel_campaign(campaign_id: str) -> dict[str, Any]:
    from mailer_core.campaigns import lifecycle

    return lifecycle.cancel(edge.caller_of(app), campaign_id)


@app.post("/v1/campaigns/<campaign_id>/test")
def send_campaign_test(campaign_id: str) -> Response[str]:
    from mailer_core.campaigns import send_test

    return edge.json_response(202, send_test.send_test(edge.caller_of(app), campaign_id, edge.json_body(app)))


@app.get("/v1/campaigns/<campaign_id>/log")
def campaign_log(campaign_id: str) -> dict[str, Any]:
    from mailer_core.campaigns import report

    query = app.current_event.query_string_parameters or {}
    return report.log(edge.caller_of(app), campaign_id, query)


@app.get("/v1/campaigns/<campaign_id>/log.csv")
def campaign_log_csv(campaign_id: str) -> Response[str]:
    from mailer_core.campaigns import report

    query = app.current_event.query_string_parameters or {}
    text, cursor = report.log_csv(edge.caller_of(app), campaign_id, query)
    headers = {"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'}
    if cursor:
        headers["X-Next-Cursor"] = cursor
    return Response(status_code=200, content_type="text/csv; charset=utf-8", body=text, headers=headers)


@app.post("/v1/campaigns/<campaign_id>/target-list")
def campaign_log_to_list(campaign_id: str) -> Response[str]:
    from mailer_core.campaigns import report

    return edge.json_response(
        201, report.to_target_list(edge.caller_of(app), campaign_id, edge.json_body(app))
    )


@app.get("/v1/campaigns/<campaign_id>/report")
def campaign_report(campaign_id: str) -> dict[str, Any]:
    from mailer_core.campaigns import report

    return report.report(edge.caller_of(app), campaign_id)


@app.get("/v1/suppressions")
def list_suppressions() -> dict[str, Any]:
    from mailer_core.messages import suppressions

    query = app.current_event.query_string_parameters or {}
    caller = edge.caller_of(app)
    return suppressions.list_for(
        caller,
        limit=edge.limit_param(query),
        cursor=query.get("cursor"),
        reason=query.get("reason") or None,
        state=query.get("state") or "suppressed",
    )


@app.get("/v1/suppressions/<address>")
def get_suppression(address: str) -> dict[str, Any]:
    from mailer_core.messages import suppressions

    return suppressions.get_for(edge.caller_of(app), unquote(address))


@app.delete("/v1/suppressions/<address>")
def lift_suppression(address: str) -> Response[str]:
    from mailer_core.messages import suppressions

    suppressions.lift(edge.caller_of(app), unquote(address))  # "anna%40example.com" or decoded
    return Response(status_code=204, body="")


@app.get("/v1/messages")
def list_messages() -> dict[str, Any]:
    from mailer_core.messages import queries

    query = app.current_event.query_string_parameters or {}
    return queries.list_for(
        edge.caller_of(app),
        status=query.get("status"),
        limit=edge.limit_param(query),
        cursor=query.get("cursor"),
        entity=queries.entity_filter(query.get("entity_type"), query.get("entity_id")),
    )


@app.post("/v1/messages")
def compose_message() -> Response[str]:
    from mailer_core.messages import compose

    message = compose.compose_json(edge.caller_of(app), edge.json_body(app))
    return edge.json_response(202, message)


@app.get("/v1/messages/<message_id>")
def get_message(message_id: str) -> dict[str, Any]:
    from mailer_core.messages import queries

    return queries.get(edge.caller_of(app), message_id)


@app.patch("/v1/messages/<message_id>")
def edit_scheduled_message(message_id: str) -> dict[str, Any]:
    from mailer_core.messages import scheduled

    return scheduled.edit(edge.caller_of(app), message_id, edge.json_body(app))


@app.delete("/v1/messages/<message_id>")
def delete_scheduled_message(message_id: str) -> Response[str]:
    from mailer_core.messages import scheduled

    scheduled.delete(edge.caller_of(app), message_id)
    return Response(status_code=204, body="")


@app.get("/v1/messages/<message_id>/body")
def message_body(message_id: str) -> dict[str, Any]:
    from mailer_core.messages import sent_bodies

    return sent_bodies.view(edge.caller_of(app), message_id)


@app.get("/v1/drafts")
def list_drafts() -> dict[str, Any]:
    from mailer_core.messages import drafts

    query = app.current_event.query_string_parameters or {}
    return drafts.list_for(edge.caller_of(app), limit=edge.limit_param(query), cursor=query.get("cursor"))


@app.post("/v1/drafts")
def save_draft() -> Response[str]:
    from mailer_core.messages import drafts

    return edge.json_response(201, drafts.save(edge.caller_of(app), edge.json_body(app)))


@app.get("/v1/drafts/<draft_id>")
def get_draft(draft_id: str) -> dict[str, Any]:
    from mailer_core.messages import drafts

    return drafts.get(edge.caller_of(app), draft_id)


@app.put("/v1/drafts/<draft_id>")
def update_draft(draft_id: str) -> dict[str, Any]:
    from mailer_core.messages import drafts

    return drafts.update(edge.caller_of(app), draft_id, edge.json_body(app))


@app.delete("/v1/drafts/<draft_id>")
def delete_draft(draft_id: str) -> Response[str]:
    from mailer_core.messages import drafts

    drafts.delete(edge.caller_of(app), draft_id)
    return Response(status_code=204, body="")


@app.post("/v1/drafts/<draft_id>/send")
def send_draft(draft_id: str) -> Response[str]:
    from mailer_core.messages import drafts

    return edge.json_response(202, drafts.send(edge.caller_of(app), draft_id))


@app.post("/v1/messages/<message_id>/cancel")
def cancel_message(message_id: str) -> dict[str, Any]:
    from mailer_core.messages import lifecycle

    return lifecycle.cancel(edge.caller_of(app), message_id)


@app.post("/v1/messages/<message_id>/retry")
def retry_message(message_id: str) -> Response[str]:
    from mailer_core.messages import lifecycle

    return edge.json_response(202, lifecycle.resend(edge.caller_of(app), message_id))


@app.post("/v1/messages/preview")
def preview_message() -> dict[str, Any]:
    from mailer_core.messages import preview  # imported here: Jinja2 and babel are not needed at a cold start

    return preview.preview(edge.caller_of(app), edge.json_body(app))


@app.get("/v1/templates")
def list_templates() -> dict[str, Any]:
    from mailer_core.templates import api as templates

    return {"items": templates.list_for(edge.caller_of(app))}


@app.post("/v1/templates")
def create_template() -> Response[str]:
    from mailer_core.templates import api as templates

    return edge.json_response(201, templates.create(edge.caller_of(app), edge.json_body(app)))


@app.get("/v1/templates/<template_id>")
def get_template(template_id: str) -> dict[str, Any]:
    from mailer_core.templates import api as templates

    return templates.get(edge.caller_of(app), template_id)


@app.get("/v1/templates/<template_id>/stats")
def get_template_stats(template_id: str) -> dict[str, Any]:
    from mailer_core.templates import stats_view as template_stats

    return template_stats.view(edge.caller_of(app), template_id)


@app.patch("/v1/templates/<template_id>")
def update_template(template_id: str) -> dict[str, Any]:
    from mailer_core.templates import api as templates

    return templates.update(edge.caller_of(app), template_id, edge.json_body(app))


@app.delete("/v1/templates/<template_id>")
def delete_template(template_id: str) -> Response[str]:
    from mailer_core.templates import api as templates

    templates.delete(edge.caller_of(app), template_id)
    return Response(status_code=204, body="")


@app.get("/v1/variables")
def list_variables() -> dict[str, Any]:
    from mailer_core.rendering import variable_catalog

    return variable_catalog.for_account(edge.caller_of(app).account_id)


@app.get("/v1/triggers")
def list_triggers() -> dict[str, Any]:
    from mailer_core.triggers import api as triggers

    return {"items": triggers.list_for(edge.caller_of(app))}


@app.post("/v1/triggers")
def create_trigger() -> Response[str]:
    from mailer_core.triggers import api as triggers

    return edge.json_response(201, triggers.create(edge.caller_of(app), edge.json_body(app)))


@app.get("/v1/triggers/<trigger_id>")
def get_trigger(trigger_id: str) -> dict[str, Any]:
    from mailer_core.triggers import api as triggers

    return triggers.get(edge.caller_of(app), trigger_id)


@app.patch("/v1/triggers/<trigger_id>")
def update_trigger(trigger_id: str) -> dict[str, Any]:
    from mailer_core.triggers import api as triggers

    return triggers.update(edge.caller_of(app), trigger_id, edge.json_body(app))


@app.delete("/v1/triggers/<trigger_id>")
def delete_trigger(trigger_id: str) -> Response[str]:
    from mailer_core.triggers import api as triggers

    triggers.delete(edge.caller_of(app), trigger_id)
    return Response(status_code=204, body="")


@app.get("/v1/links")
def list_links() -> dict[str, Any]:
    from mailer_core.triggers import links_api as trigger_links

    return {"items": trigger_links.list_for(edge.caller_of(app))}


@app.post("/v1/links")
def create_link() -> Response[str]:
    from mailer_core.triggers import links_api as trigger_links

    return edge.json_response(201, trigger_links.create(edge.caller_of(app), edge.json_body(app)))


@app.get("/v1/links/<link_id>")
def get_link(link_id: str) -> dict[str, Any]:
    from mailer_core.triggers import links_api as trigger_links

    return trigger_links.get(edge.caller_of(app), link_id)


@app.patch("/v1/links/<link_id>")
def update_link(link_id: str) -> dict[str, Any]:
    from mailer_core.triggers import links_api as trigger_links

    return trigger_links.update(edge.caller_of(app), link_id, edge.json_body(app))


@app.delete("/v1/links/<link_id>")
def delete_link(link_id: str) -> Response[str]:
    from mailer_core.triggers import links_api as trigger_links

    trigger_links.delete(edge.caller_of(app), link_id)
    return Response(status_code=204, body="")


@app.get("/v1/web-pages")
def list_web_pages() -> dict[str, Any]:
    from mailer_core.pages import settings_api as web_pages

    return web_pages.list_for(edge.caller_of(app))


@app.post("/v1/web-pages")
def create_web_page() -> Response[str]:
    from mailer_core.pages import settings_api as web_pages

    return edge.json_response(201, web_pages.create(edge.caller_of(app), edge.json_body(app)))


@app.get("/v1/web-pages/domains")
def web_page_domains() -> dict[str, Any]:
    from mailer_core.pages import settings_api as web_pages

    return web_pages.domains(edge.caller_of(app))


@app.put("/v1/web-pages/domains")
def set_web_page_domains() -> dict[str, Any]:
    from mailer_core.pages import settings_api as web_pages

    return web_pages.set_domains(edge.caller_of(app), edge.json_body(app))


@app.get("/v1/web-pages/<page_id>")
def get_web_page(page_id: str) -> dict[str, Any]:
    from mailer_core.pages import settings_api as web_pages

    return web_pages.get(edge.caller_of(app), page_id)


@app.patch("/v1/web-pages/<page_id>")
def update_web_page(page_id: str) -> dict[str, Any]:
    from mailer_core.pages import settings_api as web_pages

    return web_pages.update(edge.caller_of(app), page_id, edge.json_body(app))


@app.delete("/v1/web-pages/<page_id>")
def delete_web_page(page_id: str) -> Response[str]:
    from mailer_core.pages import settings_api as web_pages

    web_pages.delete(edge.caller_of(app), page_id)
    return Response(status_code=204, body="")


@app.get("/v1/target-lists")
def list_target_lists() -> dict[str, Any]:
    from mailer_core.audiences import lists_api

    return {"items": lists_api.list_for(edge.caller_of(app))}


@app.post("/v1/target-lists")
def create_target_list() -> Response[str]:
    from mailer_core.audiences import lists_api

    return edge.json_response(201, lists_api.create(edge.caller_of(app), edge.json_body(app)))


@app.get("/v1/target-lists/<list_id>")
def get_target_list(list_id: str) -> dict[str, Any]:
    from mailer_core.audiences import lists_api

    return lists_api.get(edge.caller_of(app), list_id)


@app.patch("/v1/target-lists/<list_id>")
def update_target_list(list_id: str) -> dict[str, Any]:
    from mailer_core.audiences import lists_api

    return lists_api.update(edge.caller_of(app), list_id, edge.json_body(app))


@app.delete("/v1/target-lists/<list_id>")
def delete_target_list(list_id: str) -> Response[str]:
    from mailer_core.audiences import lists_api

    lists_api.delete(edge.caller_of(app), list_id)
    return Response(status_code=204, body="")


@app.get("/v1/target-lists/<list_id>/members")
def list_target_list_members(list_id: str) -> dict[str, Any]:
    from mailer_core.audiences import lists_api

    query = app.current_event.query_string_parameters or {}
    return lists_api.members(
        edge.caller_of(app), list_id, limit=edge.limit_param(query), cursor=query.get("cursor")
    )


@app.post("/v1/target-lists/<list_id>/members")
def add_target_list_members(list_id: str) -> dict[str, Any]:
    from mailer_core.audiences import lists_api

    return lists_api.add(edge.caller_of(app), list_id, edge.json_body(app))


@app.delete("/v1/target-lists/<list_id>/members/<member>")
def remove_target_list_member(list_id: str, member: str) -> Response[str]:
    from mailer_core.audiences import lists_api

    lists_api.remove_member(edge.caller_of(app), list_id, unquote(member))
    return Response(status_code=204, body="")


@app.post("/v1/target-lists/<list_id>/import")
def import_target_list(list_id: str) -> dict[str, Any]:
    from mailer_core.audiences import lists_api

    return lists_api.import_csv(edge.caller_of(app), list_id, edge.csv_body(app))


@app.post("/v1/uploads")
def create_upload() -> Response[str]:
    from mailer_core.files import uploads

    return edge.json_response(201, uploads.create(edge.caller_of(app), edge.json_body(app)))


@app.get("/v1/pipeline/settings")
def pipeline_settings() -> dict[str, Any]:
    from mailer_core.accounts import pipeline_secret
    from mailer_core.base.config import get_settings

    base = get_settings().public_base_url or f"https://{app.current_event.request_context.domain_name}"
    return pipeline_secret.settings_view(edge.caller_of(app), base_url=base)


@app.post("/v1/pipeline/secret/rotate")
def rotate_pipeline_secret() -> dict[str, Any]:
    from mailer_core.accounts import pipeline_secret

    return pipeline_secret.rotate(edge.caller_of(app))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
