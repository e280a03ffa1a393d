"""Team mode's rules that need no server: the address users reach, clear text refused, the
lock never on the store's credentials, the certificate, PostgreSQL's client rules, and the
settings file a user sources on another machine, and the server's account told in one line
what it cannot reach."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from digit_recognizer.config import TeamServerConfig
from digit_recognizer.errors import UserError
from digit_recognizer.team.account import ServerAccount, check_can_run
from digit_recognizer.team.postgres import _client_rules, user_url
from digit_recognizer.team.roles import lock_role_of
from digit_recognizer.team.server import _existing_database
from digit_recognizer.team.state import StatePaths, check_exposure, tracking_uri_of
from digit_recognizer.team.tls import ServerCertificate, server_certificate
from digit_recognizer.team.users import AUTHORITY_EXPANSION, write_client_settings
from tests.team.test_team_server import sourced


def test_users_are_told_the_address_they_reach_never_a_wildcard() -> None:
    assert tracking_uri_of(TeamServerConfig()) == "https://127.0.0.1:5050"
    everywhere = TeamServerConfig(host="0.0.0.0")
    with pytest.raises(UserError, match=r"set server\.address"):
        tracking_uri_of(everywhere)
    named = TeamServerConfig(host="0.0.0.0", address="10.0.0.5", tls=False, allow_clear_text=True)
    assert tracking_uri_of(named) == "http://10.0.0.5:5050"
    assert tracking_uri_of(TeamServerConfig(address="fd00::5")) == "https://[fd00::5]:5050"


def test_clear_text_beyond_loopback_is_refused_unless_accepted() -> None:
    check_exposure(TeamServerConfig(tls=False))  # loopback only: nothing crosses a network
    for exposed in (
        {"host": "0.0.0.0"},
        {"database_host": "10.0.0.5"},
        {"allowed_networks": ["10.0.0.0/24"]},
    ):
        with pytest.raises(UserError, match="clear text"):
            check_exposure(TeamServerConfig(tls=False, **exposed))
        check_exposure(TeamServerConfig(tls=False, allow_clear_text=True, **exposed))
        check_exposure(TeamServerConfig(**exposed))


def test_an_existing_database_needs_a_lock_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DIGITS_SERVER_DATABASE_URL", "DIGITS_SERVER_LOCK_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    store = "postgresql://mlflow:secret@db:5432/mlflow"
    assert _existing_database(TeamServerConfig()) is None, "our own cluster"
    for lock in ("", "postgresql://mlflow:secret@db:5432/locks"):
        with pytest.raises(UserError, match="lock_database_url"):
            _existing_database(TeamServerConfig(database_url=store, lock_database_url=lock))
    own = "postgresql://locker:other@db:5432/locks"
    config = TeamServerConfig(database_url=store, lock_database_url=own)
    assert _existing_database(config) == (store, own)


def test_postgres_admits_other_machines_over_ssl_only_when_tls_is_on() -> None:
    config = TeamServerConfig(database_host="0.0.0.0", allowed_networks=["10.77.0.0/24"])
    rules = _client_rules(config, "10.77.0.1").splitlines()
    assert "hostssl mlflow digits_lock,+digits_lockers 10.77.0.0/24 scram-sha-256" in rules
    superuser = {rule.split()[3] for rule in rules if rule.split()[2:3] == ["digits"]}
    assert superuser == {"127.0.0.1/32", "::1/128"}, "the superuser connects from loopback only"
    clear = TeamServerConfig(tls=False, allow_clear_text=True, allowed_networks=["10.77.0.0/24"])
    assert "host mlflow digits_lock,+digits_lockers 10.77.0.0/24 scram-sha-256" in _client_rules(
        clear, "x"
    )
    assert user_url(config, "10.77.0.1", lock_role_of("ana"), "p w", "/ca.pem") == (
        "postgresql://digits_lock_ana:p%20w@10.77.0.1:5433/mlflow?sslmode=verify-full"
        "&sslrootcert=/ca.pem"
    )
    # PostgreSQL cuts names at 63 bytes: two long user names sharing a prefix stay apart
    long_names = [lock_role_of("a" * 64), lock_role_of("a" * 63 + "b")]
    assert all(len(role) <= 63 for role in long_names) and long_names[0] != long_names[1]


def test_the_certificate_names_the_address_and_is_made_again_when_it_changes(
    tmp_path: Path,
) -> None:
    paths = StatePaths(tmp_path)
    config = TeamServerConfig()
    first = server_certificate(config, paths, tmp_path, "10.77.0.1")
    assert first.authority is not None
    authority = x509.load_pem_x509_certificate(first.authority.read_bytes())
    issued = x509.load_pem_x509_certificate(first.certificate.read_bytes())
    issued.verify_directly_issued_by(authority)
    names = issued.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} >= {"10.77.0.1"}
    assert oct(first.key.stat().st_mode)[-3:] == "600"
    # kept while the address stands; a new address gets a new certificate, same authority
    assert server_certificate(config, paths, tmp_path, "10.77.0.1").certificate.read_bytes() == (
        first.certificate.read_bytes()
    )
    moved = server_certificate(config, paths, tmp_path, "team.example")
    renamed = x509.load_pem_x509_certificate(moved.certificate.read_bytes())
    renamed.verify_directly_issued_by(authority)
    dns = renamed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "team.example" in dns.get_values_for_type(x509.DNSName)


def test_a_settings_file_sourced_elsewhere_saves_the_authority_and_keeps_every_value(
    tmp_path: Path,
) -> None:
    # given a settings file with awkward values and the team's authority
    authority = tmp_path / "ca.pem"
    authority.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    settings = tmp_path / "ana.env"
    password = 'it\'s $HOME `x` "y"'
    lock = f"postgresql://l:p@h:1/m?sslmode=verify-full&sslrootcert={AUTHORITY_EXPANSION}"
    databases = {"DIGITS_REGISTRY_LOCK_URL": lock}
    write_client_settings(settings, "https://h:5050", "ana", password, databases, authority)
    assert oct(settings.stat().st_mode)[-3:] == "600"
    # when a fresh login on another machine sources it
    home = tmp_path / "home"
    found = sourced(settings, home)
    # then every value arrives as written, and the authority is saved in the user's home
    saved = home / ".config/digit-recognizer/h_5050-ca.pem"
    assert found["MLFLOW_TRACKING_PASSWORD"] == password
    assert found["MLFLOW_TRACKING_SERVER_CERT_PATH"] == str(saved)
    assert found["DIGITS_REGISTRY_LOCK_URL"].endswith(f"sslrootcert={saved}")
    assert saved.read_text() == authority.read_text()
    assert "digits_ca" not in found, "the helper variable is unset"


def handshake(certificate: ServerCertificate, server_name: str) -> str:
    """A TLS handshake in memory between the server's certificate and a client that trusts
    the authority and verifies as strictly as Python 3.13 does by default; its version."""
    import contextlib
    import ssl

    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certificate.certificate, certificate.key)
    client = ssl.create_default_context(cafile=str(certificate.authority))
    client.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
    pipes = [ssl.MemoryBIO() for _ in range(4)]
    client_side = client.wrap_bio(pipes[0], pipes[1], server_hostname=server_name)
    server_side = server.wrap_bio(pipes[2], pipes[3], server_side=True)
    for _ in range(10):
        for side, outgoing, incoming in [
            (client_side, pipes[1], pipes[2]),
            (server_side, pipes[3], pipes[0]),
        ]:
            with contextlib.suppress(ssl.SSLWantReadError):  # waits for the other side
                side.do_handshake()
            incoming.write(outgoing.read())
    return str(client_side.version())


def authority_expiring_in(days: int, folder: Path) -> None:
    """An authority of the older kind (no key identifier) that expires in ``days``."""
    import datetime

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old team CA")])
    now = datetime.datetime.now(datetime.UTC)
    old = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.pem").write_bytes(old.public_bytes(serialization.Encoding.PEM))
    (folder / "ca.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def test_a_strict_client_accepts_the_team_certificate_and_an_old_authority_is_replaced(
    tmp_path: Path,
) -> None:
    # given the state of an earlier server: an authority without key identifiers, about to
    # outlive no certificate it could sign
    paths = StatePaths(tmp_path / "state with a space")
    authority_expiring_in(100, paths.tls)
    old_authority = (paths.tls / "ca.pem").read_bytes()
    # when the server's certificate is asked for
    issued = server_certificate(TeamServerConfig(), paths, tmp_path, "10.77.0.1")
    # then a new authority was made, and a strictly verifying client completes the handshake
    assert issued.authority is not None and issued.authority.read_bytes() != old_authority
    assert handshake(issued, "10.77.0.1").startswith("TLSv1.")
    # and kept while it lasts: the next start issues nothing
    again = server_certificate(TeamServerConfig(), paths, tmp_path, "10.77.0.1")
    assert again.authority is not None
    assert again.authority.read_bytes() == issued.authority.read_bytes()
    assert again.certificate.read_bytes() == issued.certificate.read_bytes()


def test_certificate_paths_with_spaces_reach_uvicorn_whole(tmp_path: Path) -> None:
    import shlex

    from digit_recognizer.team.mlflow_server import _network_options

    folder = tmp_path / "state with a space"
    certificate = ServerCertificate(folder / "server.pem", folder / "server.key", None)
    options = _network_options(TeamServerConfig(), "10.77.0.1", certificate)
    # MLflow splits --uvicorn-opts with shlex
    assert shlex.split(options[options.index("--uvicorn-opts") + 1]) == [
        "--ssl-certfile",
        str(folder / "server.pem"),
        "--ssl-keyfile",
        str(folder / "server.key"),
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another account needs root")
def test_an_account_that_cannot_reach_this_python_is_told_so_in_one_line() -> None:
    # given an account outside the private folder this Python lives in (pyenv under /root)
    nobody = pwd.getpwnam("nobody")
    account = ServerAccount("nobody", nobody.pw_uid, nobody.pw_gid)
    probe = ["runuser", "-u", "nobody", "--", "test", "-x", sys.executable]
    if subprocess.run(probe, check=False).returncode == 0:
        pytest.skip(f"{sys.executable} is within nobody's reach on this machine")
    # when the server is about to run as it, then one line says what to do, no traceback
    with pytest.raises(UserError) as refused:
        check_can_run(account, dict(os.environ), [])
    message = str(refused.value)
    assert "nobody cannot run" in message and "setfacl" in message and "\n" not in message
