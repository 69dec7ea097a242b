"""Field encryption (AES-256-GCM), blind indexes (HMAC-SHA256) and per-purpose subkeys."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.config import Settings

_NONCE = 12
_VERSION = b"\x01"


class DecryptionError(Exception):
    """Ciphertext could not be opened (wrong key, tampered, or shredded)."""


def derive_key(master: bytes, purpose: str) -> bytes:
    """A 32-byte subkey for one purpose, so no key is used for two things."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
        master
    )


def seal(key: bytes, plaintext: bytes, *, aad: bytes = b"") -> bytes:
    """Encrypt with AES-256-GCM: version byte, 12-byte nonce, ciphertext and tag."""
    nonce = os.urandom(_NONCE)
    return _VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, *, aad: bytes = b"") -> bytes:
    if not sealed or sealed[:1] != _VERSION:
        raise DecryptionError("unknown ciphertext format")
    try:
        return AESGCM(key).decrypt(sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :], aad)
    except Exception as exc:  # cryptography raises InvalidTag; never echo the input
        raise DecryptionError("ciphertext could not be decrypted") from exc


@dataclass(frozen=True)
class Crypto:
    """Keys for this service, derived from settings once at start-up."""

    field_key: bytes
    blind_key: bytes
    secret_key: bytes  # HMACs of one-time codes and other server-side secrets
    retention_kek: bytes  # wraps the per-record data keys of retained records

    @classmethod
    def from_settings(cls, settings: Settings) -> Crypto:
        field_master = settings.key_bytes("field_encryption_key")
        blind_master = settings.key_bytes("blind_index_key")
        return cls(
            field_key=derive_key(field_master, "dsr/field-encryption/v1"),
            blind_key=derive_key(blind_master, "dsr/blind-index/v1"),
            secret_key=derive_key(blind_master, "dsr/server-secret/v1"),
            retention_kek=derive_key(field_master, "dsr/retention-kek/v1"),
        )

    def encrypt(self, plaintext: str | bytes, *, context: str = "") -> bytes:
        data = plaintext.encode() if isinstance(plaintext, str) else plaintext
        return seal(self.field_key, data, aad=context.encode())

    def decrypt(self, sealed: bytes, *, context: str = "") -> bytes:
        return open_sealed(self.field_key, sealed, aad=context.encode())

    def decrypt_str(self, sealed: bytes, *, context: str = "") -> str:
        return self.decrypt(sealed, context=context).decode()

    def encrypt_json(self, value: Any, *, context: str = "") -> bytes:
        return self.encrypt(json.dumps(value, ensure_ascii=False, default=str), context=context)

    def decrypt_json(self, sealed: bytes, *, context: str = "") -> Any:
        return json.loads(self.decrypt(sealed, context=context))

    def blind_index(self, kind: str, normalised_value: str) -> str:
        """Deterministic, keyed, one-way: equal identifiers give equal indexes."""
        message = f"{kind}:{normalised_value}".encode()
        return hmac.new(self.blind_key, message, hashlib.sha256).hexdigest()

    def mac(self, purpose: str, value: str) -> str:
        """Keyed HMAC for server-side secrets (one-time codes, idempotency fingerprints)."""
        return hmac.new(self.secret_key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def equal(a: str, b: str) -> bool:
        return hmac.compare_digest(a.encode(), b.encode())
