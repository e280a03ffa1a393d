"""The cluster's roles beyond MLflow's store: each user's own lock role, and the prediction
log's database, with its owner (the admin's: retention deletes) and its writer, which may only
INSERT and SELECT (every edit user's: each server they run logs there)."""

from __future__ import annotations

import hashlib
import secrets

from digit_recognizer.config import TeamServerConfig
from digit_recognizer.team.postgres import (
    LOCK_GROUP,
    LOCK_ROLE,
    LOG_DATABASE,
    LOG_OWNER,
    LOG_WRITER,
    SUPERUSER,
    local_url,
    login_role,
)


def lock_role_of(user: str) -> str:
    """The lock role of one edit user: a PostgreSQL name of at most 63 bytes."""
    role = f"{LOCK_ROLE}_{user}"
    if len(role) <= 63:
        return role
    return f"{role[:54]}_{hashlib.sha256(user.encode()).hexdigest()[:8]}"


def create_lock_role(config: TeamServerConfig, superuser_password: str, user: str) -> str:
    """``user``'s own lock role (created, or given a new password); return the password."""
    import psycopg
    from psycopg import sql

    password = secrets.token_urlsafe(18)
    url = local_url(config, SUPERUSER, superuser_password, "postgres")
    with psycopg.connect(url, connect_timeout=10, autocommit=True) as connection:
        login_role(connection, lock_role_of(user), password, replace_password=True)
        # a member of the group only: members of each other's roles could end their sessions
        connection.execute(
            sql.SQL("GRANT {} TO {}").format(
                sql.Identifier(LOCK_GROUP), sql.Identifier(lock_role_of(user))
            )
        )
    return password


def create_log_database(
    config: TeamServerConfig, superuser_password: str, owner_password: str, writer_password: str
) -> None:
    """The log's database and tables, owned by its owner; the writer may INSERT and SELECT."""
    import psycopg
    from psycopg import sql

    from digit_recognizer.monitoring.log import PredictionLog

    with psycopg.connect(
        local_url(config, SUPERUSER, superuser_password, "postgres"),
        connect_timeout=10,
        autocommit=True,
    ) as connection:
        login_role(connection, LOG_OWNER, owner_password, replace_password=False)
        login_role(connection, LOG_WRITER, writer_password, replace_password=False)
        found = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (LOG_DATABASE,)
        ).fetchone()
        if found is None:
            connection.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(LOG_DATABASE), sql.Identifier(LOG_OWNER)
                )
            )
    owner_url = local_url(config, LOG_OWNER, owner_password, LOG_DATABASE)
    PredictionLog(owner_url.replace("postgresql://", "postgresql+psycopg://", 1)).create_tables()
    with psycopg.connect(owner_url, connect_timeout=10, autocommit=True) as connection:
        # the database's owner owns its public schema (PostgreSQL 15): nobody else creates in it
        connection.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        connection.execute(
            sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(
                sql.Identifier(LOG_DATABASE)
            )
        )
        writer = sql.Identifier(LOG_WRITER)
        connection.execute(
            sql.SQL("GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO {}").format(writer)
        )
        connection.execute(
            sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(writer)
        )
