"""The sections for what runs beside the pipeline: serving, pictures, the team server."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator, model_validator

from digit_recognizer.config.section import Section


class ServeConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=5001, ge=1, le=65535)
    workers: int = Field(default=1, ge=1)  # uvicorn worker processes, each with the model
    poll_seconds: float = Field(default=5.0, gt=0.0, le=3600.0)  # alias checks (champion)
    # each served version's files, so a worker restarted while the store is down still answers
    local_copies_dir: str = ".served-models"
    max_request_bytes: int = Field(default=8_000_000, ge=10_000)  # larger bodies get 413
    # a request's work, refused (400) before it is done: pictures' pixels summed over the
    # request, multipart parts, Kaggle rows
    max_request_megapixels: float = Field(default=50.0, gt=0.0)
    max_parts: int = Field(default=64, ge=1)
    max_rows: int = Field(default=5_000, ge=1)
    # requests a worker answers at once; beyond it 503 with Retry-After, never a queue
    max_concurrent_requests: int = Field(default=16, ge=1)
    # a request's whole work (its body arriving, pictures read, rows predicted) stops past this:
    # 408 while the body is still arriving, 503 once it is being answered
    request_timeout_seconds: float = Field(default=10.0, gt=0.0, le=3600.0)
    # pages on other origins allowed to POST here (browsers send Origin); others get 403
    allowed_origins: list[str] = Field(default=[])
    ui_port: int = Field(default=5000, ge=1, le=65535)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            scheme, _, rest = origin.partition("://")
            if scheme not in ("http", "https") or not rest or "/" in rest or "," in origin:
                raise ValueError(f"{origin!r} is not an origin like https://example.org:8443")
        return origins


class PicturesConfig(Section):
    """What ``digits predict`` and ``digits serve`` accept as a picture of a digit."""

    max_pixels: int = Field(default=40_000_000, ge=784)  # width x height; larger: refused
    max_bytes: int = Field(default=20_000_000, ge=1_000)  # a file for predict (serve: its body)


class TeamServerConfig(Section):
    """``digits server``: the team's MLflow server on PostgreSQL, with basic auth and TLS."""

    host: str = "127.0.0.1"  # what the MLflow server listens on; 0.0.0.0 for other machines
    # The name or address teammates reach this machine by: it goes into their settings and the
    # certificate. Empty: ``host`` itself (refused when ``host`` listens on every address).
    address: str = ""
    port: int = Field(default=5050, ge=1, le=65535)
    workers: int = Field(default=2, ge=1)
    state_dir: str = ".team-server"  # cluster, artifacts, logs, secrets (git-ignored)
    # Started by root, mlflow server runs as this account (a system account made when missing).
    run_as: str = "digits"
    # An existing PostgreSQL (postgresql://user:password@host:port/database) instead of a
    # cluster in state_dir; DIGITS_SERVER_DATABASE_URL overrides it (keep passwords out of git).
    database_url: str = ""
    # With database_url: the database (or role) users take the promotion lock on, never the
    # store's own; DIGITS_SERVER_LOCK_DATABASE_URL overrides it.
    lock_database_url: str = ""
    database_host: str = "127.0.0.1"  # the cluster in state_dir listens here
    database_port: int = Field(default=5433, ge=1, le=65535)
    # Networks (CIDR) whose clients the cluster admits, over SSL when tls is on; loopback always.
    allowed_networks: list[str] = Field(default=[])
    # HTTPS and PostgreSQL SSL with a certificate made on first start, or the files below.
    tls: bool = True
    tls_certificate: str = ""  # PEM chain the clients' own trust store accepts
    tls_key: str = ""
    # Listening beyond loopback without TLS sends passwords in clear text: refused unless true.
    allow_clear_text: bool = False
    # Where proxied artifacts go: empty for state_dir/artifacts, or a URL (s3://bucket/path with
    # the usual AWS_* / MLFLOW_S3_ENDPOINT_URL variables for S3-compatible stores).
    artifacts_destination: str = ""

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        for network in networks:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        return networks

    @model_validator(mode="after")
    def _certificate_and_key(self) -> TeamServerConfig:
        if bool(self.tls_certificate) != bool(self.tls_key):
            raise ValueError("tls_certificate and tls_key go together (both or neither)")
        return self
