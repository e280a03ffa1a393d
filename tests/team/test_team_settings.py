"""Team mode's rules that need no server: the address users reach, clear text refused, the
lock never on the store's credentials, the certificate, PostgreSQL's client rules, and the
settings file a user sources on another machine."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from digit_recognizer.config import TeamServerConfig
from digit_recognizer.errors import UserError
from digit_recognizer.team.postgres import _client_rules, lock_url
from digit_recognizer.team.server import _existing_database
from digit_recognizer.team.state import StatePaths, check_exposure, tracking_uri_of
from digit_recognizer.team.tls import server_certificate
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
    assert "hostssl mlflow digits_lock 10.77.0.0/24 scram-sha-256" in rules
    superuser = {rule.split()[3] for rule in rules if rule.split()[2:3] == ["digits"]}
    assert superuser == {"127.0.0.1/32", "::1/128"}, "the superuser connects from loopback only"
    clear = TeamServerConfig(tls=False, allow_clear_text=True, allowed_networks=["10.77.0.0/24"])
    assert "host mlflow digits_lock 10.77.0.0/24 scram-sha-256" in _client_rules(clear, "x")
    assert lock_url(config, "10.77.0.1", "p w", "/ca.pem") == (
        "postgresql://digits_lock:p%20w@10.77.0.1:5433/mlflow?sslmode=verify-full"
        "&sslrootcert=/ca.pem"
    )


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
    write_client_settings(settings, "https://h:5050", "ana", password, lock, authority)
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
