"""Test fixtures: one migrated database and one Prefect test server per session; provider stubs on demand.

Select the backend with CAREPATH_TEST_DB=sqlite (default) or postgresql (with CAREPATH_TEST_POSTGRES_URL).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from carepath import db
from carepath.settings import get_settings, reset_settings
from tests.utils.databases import BACKEND, empty_all_tables, fresh_database

# Tests never read a developer's .env or provider credentials from the environment.
for _key in [k for k in os.environ if k.startswith(("CAREPATH_", "TWILIO_", "SENDGRID_"))]:
    if _key not in ("CAREPATH_TEST_DB", "CAREPATH_TEST_POSTGRES_URL") and not _key.startswith(
        "CAREPATH_CHAOS_"
    ):
        del os.environ[_key]
os.environ["CAREPATH_ENV_FILE"] = ""  # never a developer's .env
os.environ.setdefault("CAREPATH_SEND_BACKOFF_SECONDS", "0.01")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("CAREPATH_PUBLIC_BASE_URL", "https://care.example.test")


def pytest_report_header(config: pytest.Config) -> str:
    return f"carepath database backend: {BACKEND}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fresh_database(tmp_path_factory.mktemp("db")) as url:
        os.environ["CAREPATH_DATABASE_URL"] = url
        reset_settings()
        db.reset_engine()
        yield url
        db.reset_engine()


@pytest.fixture()
def engine(database_url: str):
    """The application's engine on a database emptied for this test."""
    eng = db.get_engine()
    empty_all_tables(eng)
    yield eng


@pytest.fixture()
def session(engine) -> Iterator[Session]:
    """A session for arranging and asserting; commit what the code under test must see."""
    with db.get_sessionmaker()() as s:
        yield s


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One real Prefect API for the whole session (about 10 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="session")
def dask_cluster(database_url: str):
    """A local Dask cluster of worker processes for the session's batch-job tests (each worker builds its own
    engine from CAREPATH_DATABASE_URL, which it inherits). SQLite has one writer: one worker there."""
    from distributed import LocalCluster

    workers = 1 if database_url.startswith("sqlite") else 2
    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def provider_stub_server():
    from stubs.provider_stub import ProviderStub

    with ProviderStub() as stub:
        yield stub


@pytest.fixture()
def providers(provider_stub_server, monkeypatch: pytest.MonkeyPatch):
    """Point the real Twilio and SendGrid SDKs at the local stub for this test."""
    stub = provider_stub_server
    stub.reset()
    monkeypatch.setenv("CAREPATH_TWILIO_ACCOUNT_SID", "ACtest")
    monkeypatch.setenv("CAREPATH_TWILIO_AUTH_TOKEN", "test-token")
    monkeypatch.setenv("CAREPATH_TWILIO_FROM_NUMBER", "+15005550006")
    monkeypatch.setenv("CAREPATH_TWILIO_BASE_URL", stub.base_url)
    monkeypatch.setenv("CAREPATH_SENDGRID_API_KEY", "SG.test-key")
    monkeypatch.setenv("CAREPATH_SENDGRID_HOST", stub.base_url)
    monkeypatch.setenv("CAREPATH_SEND_TIMEOUT_SECONDS", "2")
    reset_settings()
    yield stub
    monkeypatch.undo()
    reset_settings()


@pytest.fixture()
def settings():
    return get_settings()


@pytest.fixture(scope="session")
def sendgrid_keys():
    from tests.utils.signing import SendGridKeys

    return SendGridKeys()


@pytest.fixture()
def receiver(engine, monkeypatch: pytest.MonkeyPatch, sendgrid_keys):
    """The receiver app on the test database, with known secrets, behind a real ASGI test client."""
    from fastapi.testclient import TestClient

    from receiver.app import create_app
    from tests.utils import signing

    monkeypatch.setenv("CAREPATH_IOT_WEBHOOK_SECRET", signing.IOT_SECRET)
    monkeypatch.setenv("CAREPATH_CASES_WEBHOOK_SECRET", signing.CASES_SECRET)
    monkeypatch.setenv("CAREPATH_PORTAL_WEBHOOK_SECRET", signing.PORTAL_SECRET)
    monkeypatch.setenv("CAREPATH_TWILIO_AUTH_TOKEN", signing.TWILIO_TOKEN)
    monkeypatch.setenv("CAREPATH_SENDGRID_WEBHOOK_PUBLIC_KEY", sendgrid_keys.public_key)
    monkeypatch.setenv("CAREPATH_WEBHOOK_MAX_BODY_BYTES", "65536")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    reset_settings()
    with TestClient(create_app(get_settings()), base_url="https://care.example.test") as client:
        yield client
    reset_settings()
