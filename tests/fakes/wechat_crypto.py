"""WeChat's callback signatures and message encryption, written from the specification.

The loopback WeChat fake signs and encrypts with this module rather than wechatpy, so that a
mistake shared by griddesk's channel code and the fake cannot pass unnoticed
(docs: PROTOCOLS.md §2.3 item 1). The official vectors in PROTOCOLS.md §2.1 and §3.1 pin it.

The scheme (PROTOCOLS.md §2.1, "The AES scheme"), the same for the Official Account and WeCom:

    key        = b64decode(EncodingAESKey + "=")            32 bytes
    iv         = key[:16]
    plaintext  = 16 random bytes ‖ uint32 big-endian len(msg) ‖ msg ‖ receiver id
    padded     = PKCS#7 to a multiple of 32 bytes (not AES's 16)
    Encrypt    = b64encode(AES-256-CBC(key, iv, padded))
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import string
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32


class CryptoError(ValueError):
    """Ciphertext that does not decrypt to a well-formed WeChat plaintext."""


def signature(*parts: str) -> str:
    """sha1 over the parts sorted as strings and joined: `signature` with (token, timestamp,
    nonce), `msg_signature` with the `Encrypt` value added."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def new_encoding_aes_key() -> str:
    """A fresh 43-character EncodingAESKey, as the admin console generates one."""
    return base64.b64encode(os.urandom(32)).decode("ascii").rstrip("=")


def aes_key(encoding_aes_key: str) -> bytes:
    if len(encoding_aes_key) != 43:
        raise CryptoError(f"an EncodingAESKey has 43 characters, not {len(encoding_aes_key)}")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error as exc:
        raise CryptoError("the EncodingAESKey is not base64") from exc
    if len(key) != 32:
        raise CryptoError("the EncodingAESKey does not decode to 32 bytes")
    return key


def encrypt(message: bytes, encoding_aes_key: str, receiver_id: str,
            *, random_prefix: bytes | None = None) -> str:
    """The base64 `Encrypt` value carrying `message` for `receiver_id` (appid or corpid)."""
    key = aes_key(encoding_aes_key)
    prefix = os.urandom(16) if random_prefix is None else random_prefix
    if len(prefix) != 16:
        raise CryptoError("the random prefix is 16 bytes")
    plain = prefix + struct.pack(">I", len(message)) + message + receiver_id.encode("utf-8")
    pad = BLOCK - len(plain) % BLOCK
    plain += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode("ascii")


def decrypt(encrypted: str, encoding_aes_key: str) -> tuple[bytes, str]:
    """(message, receiver id) from an `Encrypt` value; CryptoError when it is not well formed."""
    key = aes_key(encoding_aes_key)
    try:
        data = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CryptoError("Encrypt is not base64") from exc
    if not data or len(data) % 16:
        raise CryptoError("Encrypt is not a whole number of AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(data) + decryptor.finalize()
    pad = plain[-1]
    # Strict padding: a wrong key yields random bytes, and lenient unpadding would let some
    # of them through as a plausible message.
    if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
        raise CryptoError("bad PKCS#7 padding (wrong key or damaged ciphertext)")
    body = plain[16:-pad]
    if len(body) < 4:
        raise CryptoError("the plaintext is too short")
    (length,) = struct.unpack(">I", body[:4])
    if 4 + length > len(body):
        raise CryptoError("the length field runs past the plaintext")
    try:
        receiver_id = body[4 + length:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CryptoError("the receiver id is not UTF-8") from exc
    return body[4:4 + length], receiver_id


def nonce() -> str:
    """A numeric nonce like the ones WeChat sends."""
    return str(secrets.randbelow(9 * 10**9) + 10**9)


def random_text(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))
