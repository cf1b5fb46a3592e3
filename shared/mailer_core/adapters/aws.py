"""boto3 clients, created on first use and reused for the life of the container.

botocore follows AWS_ENDPOINT_URL, which is how the local stack points every client at
moto. Only the adapter module of each service asks for its client here.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=20)


@cache
def client(service: str) -> Any:
    config = _CONFIG
    if service == "s3" and not (os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")):
        # Presigned upload URLs name the bucket's region (the global endpoint redirects new buckets).
        config = config.merge(Config(signature_version="s3v4", s3={"addressing_style": "virtual"}))
    return boto3.session.Session().client(service, config=config)  # type: ignore[call-overload]


def reset_clients() -> None:
    """Forget cached clients (the local stack and tests switch endpoints); PynamoDB's connections
    are forgotten by `store.models.reset_connections`, which calls this."""
    client.cache_clear()
