"""POST /v1/uploads: presigned S3 POSTs that really take a file, and the limits they carry."""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import boto3
import pytest
import urllib3

from devstack.moto_server import MotoServer, local_aws_environment, start_moto_server
from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.constants import TEST_AUDIENCE, TEST_SECRET
from tests.support.fixtures.attachments import ACCOUNT, ask_upload, mailbox_body
from tests.support.smtp_servers import SmtpTestServer
from tests.support.stack import stack_for_functions

MB = 1024 * 1024


@pytest.fixture(scope="module")
def moto_http() -> Iterator[MotoServer]:
    server = start_moto_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http_stack(moto_http: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[StackResources]:
    """The template's resources in a moto server on 127.0.0.1, reached over HTTP as the local stack does."""
    moto_http.reset()
    for name, value in local_aws_environment(moto_http.endpoint).items():
        monkeypatch.setenv(name, value)
    yield from stack_for_functions(monkeypatch)


def post_file(upload: dict[str, Any], data: bytes, filename: str = "file.bin") -> int:
    """What the widget does: a multipart/form-data POST with every field, the file last."""
    fields = [*upload["fields"].items(), ("file", (filename, data, upload["fields"]["Content-Type"]))]
    body, content_type = urllib3.encode_multipart_formdata(fields)
    request = urllib.request.Request(upload["url"], data=body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def policy_of(upload: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(upload["fields"]["policy"])))


def test_a_file_posted_to_the_presigned_url_lands_in_s3_and_can_be_attached(
    http_stack: StackResources, smtp: SmtpTestServer
) -> None:
    # GIVEN a widget user with a mailbox, over a moto server reached by real HTTP
    user = ApiClient(secret=TEST_SECRET, audience=TEST_AUDIENCE, account_id=ACCOUNT, user_id=501)
    assert user.post("/v1/mailboxes", mailbox_body(smtp)).status == 201
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 40

    # WHEN they ask for an upload and POST the file to the URL they got
    created = ask_upload(user, "Коммерческое предложение.pdf", len(pdf), content_type="application/pdf")
    status = post_file(created["upload"], pdf)

    # THEN S3 holds exactly those bytes under a key scoped by the account and the upload
    assert status == 204
    key = created["upload"]["fields"]["key"]
    assert key == f"uploads/{ACCOUNT}/{created['id']}/file.pdf"
    s3 = boto3.client("s3")
    stored = s3.get_object(Bucket=http_stack.refs["BodiesBucket"], Key=key)
    assert stored["Body"].read() == pdf and stored["ContentType"] == "application/pdf"
    assert created["filename"] == "Коммерческое предложение.pdf" and created["size"] == len(pdf)

    # AND a message can attach it: the real size is recorded, the file is kept for messages
    reply = user.post(
        "/v1/messages",
        {
            "to": ["client@example.com"],
            "subject": "Offer",
            "html": "<p>Hi</p>",
            "attachments": [{"upload_id": created["id"]}],
        },
    )
    assert reply.status == 202, reply.body
    assert reply.json()["attachments"] == [
        {
            "upload_id": created["id"],
            "filename": "Коммерческое предложение.pdf",
            "content_type": "application/pdf",
            "size": len(pdf),
        }
    ]
    tags = s3.get_object_tagging(Bucket=http_stack.refs["BodiesBucket"], Key=key)["TagSet"]
    assert tags == [{"Key": "mailer-retention", "Value": "message"}]


@pytest.mark.usefixtures("aws_stack")
def test_the_presigned_policy_makes_s3_refuse_a_bigger_file_another_type_or_no_retention_tag(
    user: ApiClient,
) -> None:
    created = ask_upload(user, "price.xlsx", 12_345)

    policy = policy_of(created["upload"])
    conditions = policy["conditions"]
    assert ["content-length-range", 0, 12_345] in conditions
    assert {"Content-Type": created["content_type"]} in conditions
    assert created["content_type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    tagging = created["upload"]["fields"]["tagging"]
    assert {"tagging": tagging} in conditions and "<Value>pending</Value>" in tagging
    assert {"key": created["upload"]["fields"]["key"]} in conditions
    expires = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert abs((expires - datetime.fromisoformat(created["upload"]["expires_at"])).total_seconds()) < 2
    assert created["expires_at"] > created["created_at"]  # an unused upload goes after a day


@pytest.mark.usefixtures("aws_stack")
def test_a_declared_size_over_the_purposes_limit_answers_413_naming_it(user: ApiClient) -> None:
    for body, limit in [
        ({"filename": "video.mp4", "size": 100 * MB + 1}, 100 * MB),
        ({"filename": "logo.png", "size": 5 * MB + 1, "purpose": "inline_image"}, 5 * MB),
    ]:
        reply = user.post("/v1/uploads", body)

        assert reply.status == 413
        assert reply.json()["error"] == "too_large" and reply.json()["field"] == "size"
        assert reply.json()["limit_bytes"] == limit and reply.json()["total_bytes"] == body["size"]
        assert f"{limit // MB} MB" in reply.json()["message"]


@pytest.mark.usefixtures("aws_stack")
def test_the_largest_allowed_sizes_are_accepted(user: ApiClient) -> None:
    assert ask_upload(user, "video.mp4", 100 * MB)["size"] == 100 * MB
    assert ask_upload(user, "logo.png", 5 * MB, purpose="inline_image")["content_type"] == "image/png"


BAD_REQUESTS: list[tuple[dict[str, Any], str]] = [
    ({"filename": "a.pdf"}, "size"),
    ({"filename": "a.pdf", "size": -1}, "size"),
    ({"filename": "a.pdf", "size": "10"}, "size"),
    ({"filename": "a.pdf", "size": True}, "size"),
    ({"size": 10}, "filename"),
    ({"filename": "   ", "size": 10}, "filename"),
    ({"filename": "a.pdf", "size": 10, "content_type": "pdf"}, "content_type"),
    ({"filename": "a.pdf", "size": 10, "purpose": "inline_image"}, "content_type"),
    (
        {"filename": "a.svg", "size": 10, "purpose": "inline_image", "content_type": "image/svg+xml"},
        "content_type",
    ),
    ({"filename": "a.pdf", "size": 10, "purpose": "avatar"}, "purpose"),
    ({"filename": "a.pdf", "size": 10, "bucket": "other"}, "bucket"),
]


@pytest.mark.usefixtures("aws_stack")
def test_bad_upload_requests_answer_422_naming_the_field(user: ApiClient) -> None:
    for body, field in BAD_REQUESTS:  # one stack for all cases: each stack costs most of a second
        reply = user.post("/v1/uploads", body)

        assert (reply.status, reply.json().get("field")) == (422, field), body


@pytest.mark.usefixtures("aws_stack")
def test_file_names_lose_folders_and_disguises_but_keep_cyrillic(user: ApiClient) -> None:
    created = ask_upload(user, "..\\..\\Счёт\u202efdp.exe", 10)

    assert created["filename"] == "Счётfdp.exe"  # the right-to-left override is gone
    assert created["upload"]["fields"]["key"].endswith("/fdp.exe")
    assert created["content_type"] == "application/x-msdownload" or created["content_type"].startswith(
        "application/"
    )


def test_uploads_need_the_widget_token(aws_stack: Any) -> None:
    anonymous = ApiClient(secret=TEST_SECRET, audience=TEST_AUDIENCE)
    assert anonymous.post("/v1/uploads", {"filename": "a.pdf", "size": 1}, auth=False).status == 401
