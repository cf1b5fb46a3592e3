"""KMS: the only module that encrypts or decrypts secrets (mailbox passwords, tokens).

Ciphertexts are bound to their owner through the encryption context, so a ciphertext copied
into another account's or mailbox's item does not decrypt there.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from mailer_core.adapters import aws
from mailer_core.base.config import get_settings


def encrypt(plaintext: str, context: Mapping[str, str]) -> str:
    """Encrypt with the stack's key; returns base64 text safe to store."""
    blob = aws.client("kms").encrypt(
        KeyId=get_settings().kms_key_id,
        Plaintext=plaintext.encode("utf-8"),
        EncryptionContext=dict(context),
    )["CiphertextBlob"]
    return base64.b64encode(blob).decode("ascii")


def decrypt(ciphertext: str, context: Mapping[str, str]) -> str:
    blob = base64.b64decode(ciphertext)
    plaintext = aws.client("kms").decrypt(CiphertextBlob=blob, EncryptionContext=dict(context))["Plaintext"]
    return bytes(plaintext).decode("utf-8")
