"""The SQL stores on real databases: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TypeVar

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from etrust.db import alembic_config, current_revision, head_revision, migrate
from etrust.models import ApiClientRow, IssuedCertificateRow, RevocationRow
from etrust.store import (
    API_ROLES,
    ApiClientStore,
    CaRecordStore,
    ServiceIdentity,
    ServiceIdentityStore,
    SqlCertificateRepository,
)
from storage.engine import SQLITE_BUSY_TIMEOUT_SECONDS, make_engine, session_factory
from storage.schema import Base
from trust.ca import CertificateAuthority, self_signed_root
from trust.certificates import load_certificate, make_name, random_serial
from trust.crl import verify_crl
from trust.errors import (
    AlreadyRevokedError,
    AuthError,
    CaNotFoundError,
    CertificateNotFoundError,
    ConfigurationError,
    ConflictError,
    EtrustError,
    MalformedInputError,
    NotFoundError,
)
from trust.repository import CertificateRepository, IssuedCertificate, MemoryRepository
from trust.softkeys import SoftwareKeyStore

pytest_plugins = ["tests.db_fixtures"]

TABLES = {
    "certificate_authorities",
    "service_identities",
    "issued_certificates",
    "revocations",
    "crl_numbers",
    "api_clients",
    "audit_records",
    "audit_head",
    "audit_checkpoints",
    "security_officers",
    "approval_requests",
    "approvals",
    "managed_keys",
    "key_events",
    "seals",
    "signed_outcomes",
    "departments",
    "license_types",
    "license_type_issuers",
    "license_serials",
    "licenses",
    "license_files",
    "license_events",
    "license_idempotency",
    "license_grants",
    "license_receipts",
    "log_head",
    "log_entries",
    "log_nodes",
    "log_checkpoints",
    "verification_checks",
    "presentations",
}
BEIJING = timezone(timedelta(hours=8))
NOW = datetime(2025, 11, 27, 9, 30, 15, 123456, tzinfo=BEIJING)

_T = TypeVar("_T")


def issued(issuer: str = "issuing-sm2", serial: int | None = None) -> IssuedCertificate:
    """A certificate record; the repository stores the DER opaquely, so any bytes do."""
    serial = random_serial() if serial is None else serial
    return IssuedCertificate(
        issuer=issuer,
        serial=serial,
        subject=f"C=CN, O=测试局, CN=证书 {serial:x}",
        profile="seal-signer",
        not_before=NOW,
        not_after=NOW + timedelta(days=365),
        der=hashlib.sha256(f"{issuer}/{serial}".encode()).digest() * 20,
    )


def count(sessions: sessionmaker[Session], table: type[Base]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def in_threads(n: int, work: Callable[[int], _T]) -> tuple[list[_T], list[BaseException]]:
    """Run ``work(i)`` in ``n`` threads released together; results and exceptions."""
    barrier = threading.Barrier(n)
    results: list[_T] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        try:
            value = work(i)
        except BaseException as exc:
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(value)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return results, errors


# ----------------------------------------------------------------------------- engine, schema


def test_make_engine_refuses_other_databases() -> None:
    with pytest.raises(ConfigurationError):
        make_engine("mysql://localhost/etrust")


def test_sqlite_engine_settings(sqlite_database: str) -> None:
    engine = make_engine(sqlite_database)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            busy_ms = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
            assert busy_ms == SQLITE_BUSY_TIMEOUT_SECONDS * 1000
    finally:
        engine.dispose()


def test_migrate_creates_schema_and_is_idempotent(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # migrations must not depend on the current directory
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) is None
        migrate(engine)
        assert current_revision(engine) == head_revision() == "0007_verifications"
        assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
        repo = SqlCertificateRepository(session_factory(engine))
        cert = issued()
        repo.add_certificate(cert)
        migrate(engine)  # again: nothing to do, nothing lost
        assert current_revision(engine) == head_revision()
        assert repo.get_certificate(cert.issuer, cert.serial) == cert
    finally:
        engine.dispose()


def test_migrations_match_the_orm(db_engine: Engine) -> None:
    with db_engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, Base.metadata) == []


def test_downgrade_to_base_and_back(db_engine: Engine) -> None:
    with db_engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert set(inspect(db_engine).get_table_names()) == {"alembic_version"}
    assert current_revision(db_engine) is None
    migrate(db_engine)
    assert set(inspect(db_engine).get_table_names()) >= TABLES


def test_concurrent_migrations_from_several_workers(db_url: str) -> None:
    """App workers start together; each migrates; none may fail or double-create a table."""
    engines = [make_engine(db_url) for _ in range(4)]
    try:
        _, errors = in_threads(4, lambda i: migrate(engines[i]))
        assert errors == []
        assert current_revision(engines[0]) == head_revision()
    finally:
        for engine in engines:
            engine.dispose()


def test_foreign_keys_are_enforced(db_sessions: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError), db_sessions.begin() as session:
        session.add(
            RevocationRow(issuer="nobody", serial="0" * 40, reason="unspecified", revoked_at=NOW)
        )
    assert count(db_sessions, RevocationRow) == 0


# ----------------------------------------------------------------------------- certificates


def test_add_and_get_certificates(db_sessions: sessionmaker[Session]) -> None:
    repo = SqlCertificateRepository(db_sessions)
    serial = random_serial()
    sm2, rsa = issued("issuing-sm2", serial), issued("issuing-rsa", serial)
    edge = [issued(serial=1), issued(serial=(1 << 160) - 1)]
    for cert in (sm2, rsa, *edge):
        repo.add_certificate(cert)
    got = repo.get_certificate("issuing-sm2", serial)
    assert got == sm2
    assert got is not None and got.not_before.tzinfo == UTC  # same instant, read back in UTC
    for cert in edge:
        assert repo.get_certificate(cert.issuer, cert.serial) == cert
    assert sorted(repo.certificates_with_serial(serial), key=lambda c: c.issuer) == [rsa, sm2]
    assert repo.get_certificate("issuing-sm2", serial + 1) is None
    assert repo.get_certificate("root-sm2", serial) is None
    assert repo.certificates_with_serial(serial + 1) == []
    assert repo.get_certificate("issuing-sm2", -1) is None  # never storable: simply absent
    assert repo.certificates_with_serial(1 << 200) == []


def test_recording_a_certificate_twice(db_sessions: sessionmaker[Session]) -> None:
    repo = SqlCertificateRepository(db_sessions)
    cert = issued()
    repo.add_certificate(cert)
    repo.add_certificate(cert)  # the same again (a retried request): nothing changes
    with pytest.raises(ConflictError):
        repo.add_certificate(replace(cert, der=b"another certificate"))
    assert repo.certificates_with_serial(cert.serial) == [cert]


@pytest.mark.parametrize(
    "change",
    [
        {"serial": -5},
        {"serial": 1 << 160},
        {"issuer": "no spaces please"},
        {"not_before": datetime(2025, 1, 1)},  # naive: meaning depends on the machine
    ],
)
def test_unstorable_certificates_are_refused(
    db_sessions: sessionmaker[Session], change: dict[str, object]
) -> None:
    repo = SqlCertificateRepository(db_sessions)
    with pytest.raises(MalformedInputError):
        repo.add_certificate(replace(issued(), **change))  # type: ignore[arg-type]
    with db_sessions() as session:
        assert session.execute(text("SELECT count(*) FROM issued_certificates")).scalar() == 0


def test_revoke_and_list_revocations(db_sessions: sessionmaker[Session]) -> None:
    repo = SqlCertificateRepository(db_sessions)
    certs = [issued() for _ in range(4)]
    for cert in certs:
        repo.add_certificate(cert)
    other = issued("issuing-rsa")
    repo.add_certificate(other)
    by_serial = sorted(certs[:3], key=lambda c: c.serial)
    reasons = ["key_compromise", "superseded", "unspecified"]
    revoked = []
    for cert, reason in reversed(list(zip(by_serial, reasons, strict=True))):
        revoked.append(repo.revoke(cert.issuer, cert.serial, reason, NOW))
    assert revoked[0].reason == "unspecified" and revoked[0].revoked_at == NOW
    listed = repo.revocations("issuing-sm2")
    assert [r.serial for r in listed] == [c.serial for c in by_serial]  # numeric order
    assert [r.reason for r in listed] == reasons
    assert listed == sorted(revoked, key=lambda r: r.serial)
    assert repo.get_revocation("issuing-sm2", by_serial[0].serial) == listed[0]
    untouched = next(c for c in certs if c not in by_serial)
    assert repo.get_revocation("issuing-sm2", untouched.serial) is None
    assert repo.revocations("issuing-rsa") == []


def test_revoking_unknown_certificates_writes_nothing(db_sessions: sessionmaker[Session]) -> None:
    repo = SqlCertificateRepository(db_sessions)
    cert = issued("issuing-sm2")
    repo.add_certificate(cert)
    for issuer, serial in (
        ("issuing-sm2", cert.serial + 1),
        ("issuing-rsa", cert.serial),  # the same serial from another CA is another cert
        ("issuing-sm2", -1),
    ):
        with pytest.raises(CertificateNotFoundError):
            repo.revoke(issuer, serial, "key_compromise", NOW)
    assert count(db_sessions, RevocationRow) == 0
    assert repo.revocations("issuing-sm2") == []


def test_revoking_twice_keeps_the_first(db_sessions: sessionmaker[Session]) -> None:
    repo = SqlCertificateRepository(db_sessions)
    cert = issued()
    repo.add_certificate(cert)
    first = repo.revoke(cert.issuer, cert.serial, "key_compromise", NOW)
    with pytest.raises(AlreadyRevokedError):
        repo.revoke(cert.issuer, cert.serial, "superseded", NOW + timedelta(hours=1))
    assert repo.revocations(cert.issuer) == [first]
    assert count(db_sessions, RevocationRow) == 1


def test_revoke_refuses_bad_input(db_sessions: sessionmaker[Session]) -> None:
    repo = SqlCertificateRepository(db_sessions)
    cert = issued()
    repo.add_certificate(cert)
    with pytest.raises(MalformedInputError):
        repo.revoke(cert.issuer, cert.serial, "felt-like-it", NOW)
    with pytest.raises(MalformedInputError):
        repo.revoke(cert.issuer, cert.serial, "superseded", datetime(2025, 1, 1))
    assert repo.get_revocation(cert.issuer, cert.serial) is None


def test_concurrent_revocations_of_one_certificate(db_engine: Engine) -> None:
    repo = SqlCertificateRepository(session_factory(db_engine))
    cert = issued()
    repo.add_certificate(cert)
    results, errors = in_threads(
        6, lambda i: repo.revoke(cert.issuer, cert.serial, "key_compromise", NOW)
    )
    assert len(results) == 1
    assert len(errors) == 5 and all(isinstance(e, AlreadyRevokedError) for e in errors), errors
    assert repo.revocations(cert.issuer) == results


def _wait_until_blocked(engine: Engine) -> None:
    """Until some session waits on a row lock (PostgreSQL can tell; SQLite cannot, so there we
    give the other thread a moment, and it queues on the write lock anyway)."""
    if engine.dialect.name != "postgresql":
        time.sleep(0.3)
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with engine.connect() as conn:  # fresh: pg_stat_activity is frozen within a transaction
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar()
        if waiting:
            return
        time.sleep(0.02)
    pytest.fail("the concurrent writer never blocked")


@pytest.mark.parametrize("race", ["revoke", "add-certificate", "create-client"])
def test_losing_a_race_gives_the_domain_error(db_engine: Engine, race: str) -> None:
    """A writer whose check passed but whose insert lost to a concurrent transaction reports
    what a later caller would be told (already revoked, conflict), not a database error."""
    sessions = session_factory(db_engine)
    repo, clients = SqlCertificateRepository(sessions), ApiClientStore(sessions)
    cert = issued()
    repo.add_certificate(cert)
    other = issued("issuing-rsa")
    rival: dict[str, Callable[[], object]] = {
        "revoke": lambda: repo.revoke(cert.issuer, cert.serial, "superseded", NOW),
        "add-certificate": lambda: repo.add_certificate(replace(other, der=b"mine")),
        "create-client": lambda: clients.create("ra-1", "ra-officer"),
    }
    expected = {
        "revoke": AlreadyRevokedError,
        "add-certificate": ConflictError,
        "create-client": ConflictError,
    }[race]
    first_row: dict[str, Base] = {
        "revoke": RevocationRow(
            issuer=cert.issuer, serial=f"{cert.serial:040x}", reason="unspecified", revoked_at=NOW
        ),
        "add-certificate": IssuedCertificateRow(
            issuer=other.issuer,
            serial=f"{other.serial:040x}",
            subject=other.subject,
            profile=other.profile,
            not_before=other.not_before,
            not_after=other.not_after,
            der=other.der,
            created_at=NOW,
        ),
        "create-client": ApiClientRow(
            name="ra-1",
            role="auditor",
            token_prefix="0" * 12,
            token_hash="0" * 64,
            created_at=NOW,
            disabled=False,
        ),
    }
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(rival[race]())
        except BaseException as exc:
            outcome.append(exc)

    with Session(db_engine) as first, first.begin():
        first.add(first_row[race])
        first.flush()  # written but not committed: the rival cannot see it yet
        thread = threading.Thread(target=run)
        thread.start()
        _wait_until_blocked(db_engine)
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], expected), outcome


def test_crl_numbers_increase_per_issuer(db_sessions: sessionmaker[Session]) -> None:
    repo = SqlCertificateRepository(db_sessions)
    assert [repo.next_crl_number("issuing-sm2") for _ in range(3)] == [1, 2, 3]
    assert repo.next_crl_number("issuing-rsa") == 1
    assert repo.next_crl_number("issuing-sm2") == 4
    # a second repository (another worker) continues the same sequence
    assert SqlCertificateRepository(db_sessions).next_crl_number("issuing-rsa") == 2


def test_crl_numbers_under_concurrency(db_engine: Engine) -> None:
    """Workers allocating at once (the first allocation included) get distinct, contiguous numbers."""
    threads, per_thread = 8, 15
    sessions = session_factory(db_engine)

    def allocate(_: int) -> list[int]:
        repo = SqlCertificateRepository(sessions)
        return [repo.next_crl_number("issuing-sm2") for _ in range(per_thread)]

    results, errors = in_threads(threads, allocate)
    assert errors == []
    numbers = sorted(n for batch in results for n in batch)
    assert numbers == list(range(1, threads * per_thread + 1))
    assert all(batch == sorted(batch) for batch in results)  # strictly increasing per caller


def test_same_answers_as_the_memory_repository(db_sessions: sessionmaker[Session]) -> None:
    """The SQL repository is a drop-in for MemoryRepository, errors included."""
    shared = random_serial()
    certs = [issued("a", shared), issued("b", shared), issued("a"), issued("a")]

    def scenario(repo: CertificateRepository) -> list[object]:
        out: list[object] = []

        def attempt(call: Callable[[], object]) -> None:
            try:
                out.append(call())
            except EtrustError as exc:
                out.append(type(exc))

        for cert in certs:
            repo.add_certificate(cert)
        out.append([repo.certificate_status(c.issuer, c.serial) for c in certs])
        out.append(repo.certificate_status("c", shared))
        out.append(sorted(repo.certificates_with_serial(shared), key=lambda c: c.issuer))
        out.append(repo.get_certificate("b", certs[2].serial))
        for cert in reversed(certs):
            attempt(lambda c=cert: repo.revoke(c.issuer, c.serial, "superseded", NOW))  # type: ignore[misc]
        attempt(lambda: repo.revoke("a", shared, "superseded", NOW))
        attempt(lambda: repo.revoke("c", shared, "superseded", NOW))
        out.append(repo.revocations("a"))
        out.append(repo.get_revocation("b", shared))
        out.append([repo.certificate_status(c.issuer, c.serial) for c in certs])
        out.append(repo.certificate_status("a", 0))
        out.append([repo.next_crl_number(i) for i in ("a", "a", "b", "a")])
        out.append([repo.next_crl(i) for i in ("a", "b", "c")])
        return out

    assert scenario(SqlCertificateRepository(db_sessions)) == scenario(MemoryRepository())


# ----------------------------------------------------------------------------- a real CA


@pytest.mark.parametrize("kind", ["sm2", "rsa"])
def test_ca_hierarchy_round_trips_through_the_database(
    db_url: str, tmp_path: Path, kind: str
) -> None:
    """Issue, revoke and publish CRLs; a second process (new engine) sees it all."""
    spec = "sm2" if kind == "sm2" else "rsa-2048"
    keystore = SoftwareKeyStore.open(tmp_path / "keys")
    now = datetime.now(UTC)
    engine = make_engine(db_url)
    migrate(engine)
    sessions = session_factory(engine)
    repo, records = SqlCertificateRepository(sessions), CaRecordStore(sessions)

    root_key = keystore.generate(f"root-{kind}", spec)
    root_cert = self_signed_root(root_key, make_name({"C": "CN", "CN": f"根 {kind}"}), now=now)
    records.save(f"root-{kind}", root_key.key_uri, root_cert.dump())
    root = CertificateAuthority(f"root-{kind}", root_cert, root_key, repo, clock=lambda: now)
    issuing_key = keystore.generate(f"issuing-{kind}", spec)
    issuing_cert = root.issue(
        issuing_key.public_key_info, make_name({"C": "CN", "CN": f"签发 {kind}"}), "issuing-ca"
    )
    records.save(f"issuing-{kind}", issuing_key.key_uri, issuing_cert.dump(), f"root-{kind}")
    issuing = CertificateAuthority(
        f"issuing-{kind}", issuing_cert, issuing_key, repo, clock=lambda: now
    )
    seal_key = keystore.generate(f"seal-{kind}", spec)
    seal = issuing.issue(
        seal_key.public_key_info, make_name({"C": "CN", "O": "测试局", "CN": "印章"}), "seal-signer"
    )
    issuing.revoke(seal.serial_number, "key_compromise")
    first_crl = issuing.crl()
    engine.dispose()

    engine = make_engine(db_url)  # as another worker would
    try:
        sessions = session_factory(engine)
        repo, records = SqlCertificateRepository(sessions), CaRecordStore(sessions)
        assert [r.name for r in records.list()] == [f"root-{kind}", f"issuing-{kind}"]
        record = records.get(f"issuing-{kind}")
        assert record is not None
        assert (record.key_type, record.parent) == (kind, f"root-{kind}")
        assert record.key_uri == issuing_key.key_uri
        assert load_certificate(record.certificate_der).dump() == issuing_cert.dump()

        stored = repo.get_certificate(f"issuing-{kind}", seal.serial_number)
        assert stored is not None and stored.der == seal.dump()
        assert stored.profile == "seal-signer" and "CN=印章" in stored.subject
        assert stored.not_after == seal.not_valid_after
        revocation = repo.get_revocation(f"issuing-{kind}", seal.serial_number)
        assert revocation is not None and revocation.reason == "key_compromise"

        reloaded = CertificateAuthority(
            f"issuing-{kind}",
            load_certificate(record.certificate_der),
            keystore.find(record.key_uri),
            repo,
            clock=lambda: now,
        )
        crl = reloaded.crl()
        verify_crl(crl, issuing_cert)
        assert crl.crl_number_value.native == first_crl.crl_number_value.native + 1
        entries = crl["tbs_cert_list"]["revoked_certificates"]
        assert [e["user_certificate"].native for e in entries] == [seal.serial_number]
        assert entries[0].crl_reason_value.native == "key_compromise"
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------- CA records


@pytest.fixture(scope="module")
def two_roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes, bytes]:
    """A key URI and two different root certificates for it (SM2: quick to make)."""
    keystore = SoftwareKeyStore.open(tmp_path_factory.mktemp("ca-records") / "keys")
    key = keystore.generate("root-sm2", "sm2")
    now = datetime.now(UTC)
    first = self_signed_root(key, make_name({"C": "CN", "CN": "根一"}), now=now)
    second = self_signed_root(key, make_name({"C": "CN", "CN": "根二"}), now=now)
    return key.key_uri, first.dump(), second.dump()


def test_ca_records_save_is_idempotent(
    db_sessions: sessionmaker[Session], two_roots: tuple[str, bytes, bytes]
) -> None:
    key_uri, cert, other_cert = two_roots
    records = CaRecordStore(db_sessions)
    saved = records.save("root-sm2", key_uri, cert)
    assert saved.key_type == "sm2" and saved.parent is None
    assert records.save("root-sm2", key_uri, cert) == saved  # etrust init run again
    with pytest.raises(ConflictError):
        records.save("root-sm2", key_uri, other_cert)
    with pytest.raises(ConflictError):
        records.save("root-sm2", "soft:object=elsewhere", cert)
    assert records.list() == [saved]
    assert records.get("root-sm2") == saved
    assert records.get("root-rsa") is None


def test_ca_records_refuse_bad_input(
    db_sessions: sessionmaker[Session], two_roots: tuple[str, bytes, bytes]
) -> None:
    key_uri, cert, _ = two_roots
    records = CaRecordStore(db_sessions)
    with pytest.raises(CaNotFoundError):
        records.save("issuing-sm2", key_uri, cert, parent="root-sm2")
    with pytest.raises(MalformedInputError):
        records.save("root-sm2", key_uri, b"not a certificate")
    with pytest.raises(MalformedInputError):
        records.save("根", key_uri, cert)
    assert records.list() == []


def test_service_identities(
    db_sessions: sessionmaker[Session], two_roots: tuple[str, bytes, bytes]
) -> None:
    key_uri, cert, other_cert = two_roots
    CaRecordStore(db_sessions).save("root-sm2", key_uri, cert)
    identities = ServiceIdentityStore(db_sessions)
    tsa = ServiceIdentity("tsa-sm2", "tsa", "root-sm2", "soft:object=tsa-sm2", other_cert)
    assert identities.save(tsa) == tsa
    assert identities.save(tsa) == tsa  # init run again
    with pytest.raises(ConflictError):
        identities.save(ServiceIdentity("tsa-sm2", "tsa", "root-sm2", "soft:object=x", other_cert))
    with pytest.raises(CaNotFoundError):
        identities.save(ServiceIdentity("ocsp-x", "ocsp", "no-such-ca", key_uri, cert))
    with pytest.raises(MalformedInputError):
        identities.save(ServiceIdentity("odd", "mail", "root-sm2", key_uri, cert))
    assert identities.list() == [tsa]
    assert identities.get("tsa-sm2") == tsa and identities.get("ocsp-x") is None


# ----------------------------------------------------------------------------- API clients


def test_api_clients_create_and_authenticate(db_sessions: sessionmaker[Session]) -> None:
    clients = ApiClientStore(db_sessions)
    token = clients.create("gongan-ra", "ra-officer", department="150000")
    other = clients.create("market", "department", department="152500")
    assert token.startswith("et_") and token != other
    client = clients.authenticate(token)
    assert (client.name, client.role, client.department) == ("gongan-ra", "ra-officer", "150000")
    assert token.startswith(f"et_{client.token_prefix}_")
    assert clients.authenticate(other).name == "market"
    assert [c.name for c in clients.list()] == ["gongan-ra", "market"]
    market = clients.get("market")
    assert market is not None and market.role == "department"
    assert clients.get("nobody") is None


def test_api_clients_refuse_wrong_tokens(db_sessions: sessionmaker[Session]) -> None:
    clients = ApiClientStore(db_sessions)
    token = clients.create("auditor-1", "auditor")
    other = clients.create("admin-1", "admin")
    last = token[-1]
    flipped = token[:-1] + ("A" if last != "A" else "B")
    prefix, other_prefix = token.split("_")[1], other.split("_")[1]
    for wrong in (
        flipped,
        token.replace(prefix, other_prefix),  # right secret, someone else's prefix
        other.replace(other_prefix, prefix),  # someone else's secret, right prefix
        token[:-1],
        token + "x",
        "",
        "Bearer " + token,
        "et_000000000000_" + token.split("_", 2)[2],
    ):
        with pytest.raises(AuthError):
            clients.authenticate(wrong)
    assert clients.authenticate(token).name == "auditor-1"  # the right one still works


def test_disabled_clients_cannot_authenticate(db_sessions: sessionmaker[Session]) -> None:
    clients = ApiClientStore(db_sessions)
    token = clients.create("ra-2", "ra-officer")
    clients.disable("ra-2")
    with pytest.raises(AuthError):
        clients.authenticate(token)
    clients.disable("ra-2")  # twice: harmless
    disabled = clients.get("ra-2")
    assert disabled is not None and disabled.disabled
    with pytest.raises(NotFoundError):
        clients.disable("nobody")


def test_api_clients_refuse_bad_input(db_sessions: sessionmaker[Session]) -> None:
    clients = ApiClientStore(db_sessions)
    clients.create("ra-1", "ra-officer")
    with pytest.raises(ConflictError):
        clients.create("ra-1", "auditor")
    with pytest.raises(MalformedInputError):
        clients.create("root", "superuser")
    with pytest.raises(MalformedInputError):
        clients.create("market", "department")  # whose department?
    with pytest.raises(MalformedInputError):
        clients.create("has space", "admin")
    assert [(c.name, c.role) for c in clients.list()] == [("ra-1", "ra-officer")]
    assert count(db_sessions, ApiClientRow) == 1


def test_tokens_are_never_stored_in_clear(db_sessions: sessionmaker[Session], db_url: str) -> None:
    clients = ApiClientStore(db_sessions)
    tokens = [clients.create(f"client-{role}", role, department="150000") for role in API_ROLES]
    secrets_ = [t.split("_", 2)[2] for t in tokens]
    with db_sessions() as session:
        rows = session.execute(text("SELECT * FROM api_clients")).all()
    assert len(rows) == len(tokens)
    stored = " ".join(
        v.hex() + " " + v.decode("latin-1") if isinstance(v, bytes) else str(v)
        for row in rows
        for v in row
    )
    for secret in secrets_:
        assert secret not in stored
        assert secret[:16] not in stored
    if db_url.startswith("sqlite:///"):  # and not in the file either (WAL included)
        path = Path(db_url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        assert raw and not any(s.encode() in raw for s in secrets_)
    for token in tokens:
        clients.authenticate(token)  # the hashes are really what authenticates


def test_a_higher_crl_number_never_lists_fewer_revocations(
    db_sessions: sessionmaker[Session],
) -> None:
    """Revocations racing CRL builds: CRL contents grow with their numbers."""
    repo = SqlCertificateRepository(db_sessions)
    certs = [issued("a") for _ in range(30)]
    for cert in certs:
        repo.add_certificate(cert)
    snapshots: list[tuple[int, int]] = []

    def revoke_all() -> None:
        for cert in certs:
            repo.revoke(cert.issuer, cert.serial, "superseded", NOW)

    def build_crls() -> None:
        for _ in range(30):
            number, revoked = repo.next_crl("a")
            snapshots.append((number, len(revoked)))

    threads = [
        threading.Thread(target=revoke_all),
        threading.Thread(target=build_crls),
        threading.Thread(target=build_crls),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ordered = sorted(snapshots)
    assert [n for n, _ in ordered] == list(range(1, 61))
    counts = [c for _, c in ordered]
    assert counts == sorted(counts)
    assert repo.next_crl("a")[1] == repo.revocations("a") and len(repo.revocations("a")) == 30
