"""The one Powertools logger; every line carries the ids of what it is about."""

from __future__ import annotations

from aws_lambda_powertools import Logger

logger = Logger(service="mailer")
