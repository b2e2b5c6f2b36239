"""Signed decoder packages: optional authenticity on top of the manifest's checksums.

The checksums in manifest.json catch a damaged package, not an edited one: whoever changes a weight
can rewrite its checksum. A package signed at export (`lic export --sign-key KEY.pem`) carries
manifest.sig, an Ed25519 signature over manifest.json's exact bytes; the manifest names every file's
sha256, so the signature covers the whole package. When trusted keys are configured (`lic decode
--trusted-key PUB.pem`, or LIC_TRUSTED_KEYS: PEM public keys separated by ':'), a package loads only
if one of them verifies its signature; with none configured, packages load as before.

Keys are standard PEM files, made with OpenSSL (or any Ed25519 tool):
    openssl genpkey -algorithm ed25519 -out signing.pem
    openssl pkey -in signing.pem -pubout -out signing.pub.pem

`cryptography` is imported only when a package is signed or checked: the board's decode path does
not load it unless a key is configured (host/install_board.sh installs its armv7l wheel)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from lic.errors import LicError

SIGNATURE = "manifest.sig"
TRUSTED_KEYS_ENV = "LIC_TRUSTED_KEYS"
_SIGNATURE_BYTES = 64  # Ed25519


def _ed25519():
    try:  # only here: the board imports this module on every decode, cryptography only with a key
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise LicError("signed packages need the `cryptography` package (requirements.lock; on a board, "
                       "host/install_board.sh installs it)") from None
    return serialization, ed25519


def trusted_keys(extra: list[Path] | tuple = ()) -> list[Path]:
    """The public keys a package must be signed by: `extra` (--trusted-key) and LIC_TRUSTED_KEYS."""
    env = [Path(p) for p in os.environ.get(TRUSTED_KEYS_ENV, "").split(":") if p.strip()]
    return [Path(p) for p in extra] + env


def read_key(path: Path, private: bool):
    serialization, ed25519 = _ed25519()
    what = "private" if private else "public"
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise LicError(f"cannot read the {what} key {path}: {e.strerror or e}") from None
    try:
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except (ValueError, TypeError):
        raise LicError(f"{path}: not a PEM {what} key without a password") from None
    wanted = ed25519.Ed25519PrivateKey if private else ed25519.Ed25519PublicKey
    if not isinstance(key, wanted):
        raise LicError(f"{path}: not an Ed25519 {what} key (make one with "
                       f"`openssl genpkey -algorithm ed25519 -out signing.pem`)")
    return key


def key_id(public_key) -> str:
    """Short name of a public key: the first 16 hex digits of sha256 over its raw 32 bytes."""
    serialization, _ = _ed25519()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_manifest(manifest_path: Path, private_key: Path) -> str:
    """Write manifest.sig beside a package's manifest.json; returns the signing key's id."""
    key = read_key(private_key, private=True)
    manifest_path = Path(manifest_path)
    manifest_path.with_name(SIGNATURE).write_bytes(key.sign(manifest_path.read_bytes()))
    return key_id(key.public_key())


def verify_manifest(manifest: bytes, package_dir: Path, keys: list[Path]) -> str:
    """The id of the trusted key that signed these manifest bytes (package_dir/manifest.sig);
    LicError if none did."""
    publics = [read_key(k, private=False) for k in keys]
    from cryptography.exceptions import InvalidSignature  # after read_key: cryptography is there

    sig_path = Path(package_dir) / SIGNATURE
    if not sig_path.is_file():
        raise LicError(f"decoder package {package_dir} is not signed ({SIGNATURE} missing) and trusted keys "
                       f"are configured: sign it with `lic export --sign-key`, or unset {TRUSTED_KEYS_ENV}")
    signature = sig_path.read_bytes()
    if len(signature) != _SIGNATURE_BYTES:
        raise LicError(f"{sig_path}: {len(signature)} bytes, not an Ed25519 signature")
    for key in publics:
        try:
            key.verify(signature, manifest)
            return key_id(key)
        except InvalidSignature:
            continue
    raise LicError(f"decoder package {package_dir} is not signed by a trusted key "
                   f"({', '.join(key_id(k) for k in publics)}): it was edited, or signed by another key")
