"""The server's certificate: the user's own, or one signed by a small certificate authority
made on first start, whose certificate (public) goes into every user's settings."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from digit_recognizer.config import TeamServerConfig
from digit_recognizer.errors import UserError
from digit_recognizer.files import write_private_text
from digit_recognizer.team.state import StatePaths, ip_literal

AUTHORITY, AUTHORITY_KEY, CERTIFICATE, KEY = "ca.pem", "ca.key", "server.pem", "server.key"
AUTHORITY_DAYS = 3650
CERTIFICATE_DAYS = 825  # the longest validity browsers accept for a server certificate


@dataclass(frozen=True)
class ServerCertificate:
    certificate: Path  # PEM chain the server presents
    key: Path
    authority: Path | None  # what clients must trust; None: their system's trust store


def _names(address: str) -> list[str]:
    """Every name a client on this machine or another may use: the address and loopback."""
    return list(dict.fromkeys([address, "localhost", "127.0.0.1", "::1"]))


def _subject_names(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        literal = ip_literal(name)
        entries.append(x509.IPAddress(literal) if literal is not None else x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _covers(certificate_file: Path, names: list[str], authority_file: Path) -> bool:
    """Whether the server certificate names ``names``, lasts 30 more days, carries key
    identifiers and was signed by the authority as it is now."""
    certificate = x509.load_pem_x509_certificate(certificate_file.read_bytes())
    try:
        present = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        authority_key = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return False
    if not authority_file.exists() or authority_key.value.key_identifier != _key_identifier(
        x509.load_pem_x509_certificate(authority_file.read_bytes())
    ):
        return False
    addresses = {str(ip) for ip in present.value.get_values_for_type(x509.IPAddress)}
    dns_names = set(present.value.get_values_for_type(x509.DNSName))
    wanted = {str(ipaddress.ip_address(n)) if ip_literal(n) else n for n in names}
    return wanted <= addresses | dns_names and _lasts(certificate, days=30)


def _lasts(certificate: x509.Certificate, days: int) -> bool:
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days)
    return certificate.not_valid_after_utc > soon


def _key_identifier(certificate: x509.Certificate) -> bytes | None:
    try:
        found = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return None
    return found.value.digest


def _authority_usable(authority: x509.Certificate) -> bool:
    """An authority is kept while it carries its key identifier (strict clients, such as
    Python 3.13's default VERIFY_X509_STRICT, reject a chain without) and outlives any
    certificate it would sign now."""
    return _key_identifier(authority) is not None and _lasts(authority, CERTIFICATE_DAYS + 30)


def _issue(paths: StatePaths, names: list[str]) -> None:
    """A certificate authority (kept) and a server certificate for ``names`` signed by it."""
    private = serialization.PrivateFormat.PKCS8
    pem = serialization.Encoding.PEM
    now = datetime.datetime.now(datetime.UTC)
    authority_file, authority_key_file = paths.tls / AUTHORITY, paths.tls / AUTHORITY_KEY
    kept = authority_file.exists() and authority_key_file.exists()
    if kept and _authority_usable(x509.load_pem_x509_certificate(authority_file.read_bytes())):
        authority = x509.load_pem_x509_certificate(authority_file.read_bytes())
        loaded = serialization.load_pem_private_key(authority_key_file.read_bytes(), None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        authority_key = loaded
    else:  # none yet, or one strict clients reject or about to expire: users get the new one
        authority_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "digit-recognizer team CA")])
        authority = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(authority_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=AUTHORITY_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(authority_key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(authority_key, hashes.SHA256())
        )
        encrypted = serialization.NoEncryption()
        write_private_text(
            authority_key_file, authority_key.private_bytes(pem, private, encrypted).decode()
        )
        write_private_text(authority_file, authority.public_bytes(pem).decode())
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(authority.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERTIFICATE_DAYS))
        .add_extension(_subject_names(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority_key.public_key()),
            critical=False,
        )
        .sign(authority_key, hashes.SHA256())
    )
    key_text = server_key.private_bytes(pem, private, serialization.NoEncryption()).decode()
    write_private_text(paths.tls / KEY, key_text)
    write_private_text(paths.tls / CERTIFICATE, server.public_bytes(pem).decode())


def authority_of(config: TeamServerConfig, paths: StatePaths) -> Path | None:
    """The certificate users must trust: our authority's, or None (TLS off, or the user's own
    certificate, which clients trust through their system's store). Issues nothing."""
    return paths.tls / AUTHORITY if config.tls and not config.tls_certificate else None


def server_certificate(
    config: TeamServerConfig, paths: StatePaths, root: Path, address: str
) -> ServerCertificate:
    """The user's certificate and key if given, else ours, issued again when the address
    changed or it or the authority is about to expire (the authority too: a new one reaches
    users through the settings files ``start`` and ``add-user`` write)."""
    if config.tls_certificate:
        files = [(root / name).resolve() for name in (config.tls_certificate, config.tls_key)]
        missing = [str(path) for path in files if not path.is_file()]
        if missing:
            raise UserError(f"params.yaml: server.tls_certificate/tls_key: {missing[0]} not found")
        return ServerCertificate(files[0], files[1], None)
    names = _names(address)
    certificate, key = paths.tls / CERTIFICATE, paths.tls / KEY
    authority = paths.tls / AUTHORITY
    current = certificate.exists() and key.exists() and _covers(certificate, names, authority)
    if not current or not _authority_usable(x509.load_pem_x509_certificate(authority.read_bytes())):
        paths.tls.mkdir(mode=0o700, parents=True, exist_ok=True)
        _issue(paths, names)
    return ServerCertificate(certificate, key, authority_of(config, paths))
