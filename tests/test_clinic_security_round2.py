"""Security review, round 2: one regression test per finding.

An administrator's API token cannot create accounts (a backdoor account would outlive the
token's revocation); huge ids and control characters in the audit log's query are a 422, not a
500; the per-address login limit counts an IPv6 client's whole /64 and an IPv4-mapped address
as its IPv4 address; the Content-Security-Policy forbids ``<base>``, off-site form posts and
plugins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clinic_support import (  # noqa: F401 - fixtures
    API,
    PASSWORD,
    SQLITE_ONLY,
    ClinicHarness,
    clinic_model,
    db_url,
    harness,
    served_clinic,
)
from dermsight.clinic import accounts


def _usernames(h: ClinicHarness) -> list[str]:
    return sorted(u["username"] for u in h.get("/admin/users").json())


@SQLITE_ONLY
def test_an_admin_token_cannot_create_accounts(harness: ClinicHarness) -> None:  # noqa: F811
    h = harness
    h.add_user("root", role="admin")
    h.login("root")
    token = h.post("/auth/tokens", json={"name": "script"}).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    body = {"username": "backdoor", "password": PASSWORD, "role": "admin"}
    with TestClient(h.client.app) as other:
        # the token still does admin reads ...
        assert other.get(f"{API}/admin/users", headers=bearer).status_code == 200
        # ... but creating an account needs the session
        r = other.post(f"{API}/admin/users", json=body, headers=bearer)
        assert r.status_code == 403, r.text
        detail = r.json()["detail"]
        assert "API token cannot create accounts" in detail
        assert "sign in" in detail
    assert _usernames(h) == ["root"]
    # the admin's session (cookie + CSRF) still can
    r = h.post("/admin/users", json={**body, "username": "ana", "role": "clinician"})
    assert r.status_code == 201, r.text
    assert _usernames(h) == ["ana", "root"]


@SQLITE_ONLY
def test_a_clinicians_session_still_cannot_create_accounts(
        harness: ClinicHarness) -> None:  # noqa: F811
    h = harness
    h.add_user("ana")
    h.login("ana")
    r = h.post("/admin/users", json={"username": "bo", "password": PASSWORD,
                                     "role": "admin"})
    assert r.status_code == 403
    assert "only an administrator" in r.json()["detail"]
    # an admin's session without the CSRF header cannot either
    h.add_user("root", role="admin")
    h.login("root")
    del h.client.headers["X-CSRF-Token"]
    r = h.post("/admin/users", json={"username": "bo", "password": PASSWORD,
                                     "role": "clinician"})
    assert r.status_code == 403
    assert "X-CSRF-Token" in r.json()["detail"]


def test_the_shared_service_token_cannot_create_accounts(tmp_path: Path) -> None:
    shared = "s" * 40
    with served_clinic(tmp_path, api_token=shared) as h:
        with TestClient(h.client.app) as other:
            r = other.post(f"{API}/admin/users",
                           json={"username": "backdoor", "password": PASSWORD, "role": "admin"},
                           headers={"Authorization": f"Bearer {shared}"})
        assert r.status_code in (401, 403), r.text
        assert _usernames(h) == ["admin"]


@SQLITE_ONLY
@pytest.mark.parametrize("query", [
    "before=9223372036854775808", "before=2147483648", "object_id=9223372036854775808",
    "patient=9223372036854775808", "object_id=2147483648", "patient=99999999999999999999",
    "user=a%00b", "user=ana%0Abo", "object_type=patient%00", "object_type=visit%0D%0Ax",
])
def test_audit_query_out_of_range_or_control_characters_is_422(
        harness: ClinicHarness, query: str) -> None:  # noqa: F811
    h = harness
    h.add_user("root", role="admin")
    h.login("root")
    r = h.get(f"/admin/audit?{query}")
    assert r.status_code == 422, (query, r.status_code, r.text)
    # the largest id still works
    for name in ("before", "object_id", "patient"):
        assert h.get(f"/admin/audit?{name}=2147483647").status_code == 200


@pytest.mark.parametrize(("given", "key"), [
    ("1.2.3.4", "1.2.3.4"),
    ("::ffff:1.2.3.4", "1.2.3.4"),
    ("2001:db8:1:2::5", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:9", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::5", "2001:db8:1:3::/64"),
    ("fe80::1%eth0", "fe80::/64"),
    ("unknown", "unknown"),
    ("testclient", "testclient"),
])
def test_address_key(given: str, key: str) -> None:
    assert accounts.address_key(given) == key


def _fail_logins(clinic: Any, addresses: list[str]) -> None:
    for i, ip in enumerate(addresses):
        with clinic.db.session() as s:  # a different username each time: only the address locks
            accounts.record_attempt(s, f"user{i}", ip, success=False)


@SQLITE_ONLY
@pytest.mark.parametrize(("failing", "then"), [
    # an IPv6 client rotating its address within its /64
    ([f"2001:db8:1:2::{i + 1:x}" for i in range(accounts.MAX_ADDRESS_FAILURES)],
     "2001:db8:1:2:abcd::1"),
    # the same IPv4 client, sometimes seen as IPv4-mapped IPv6
    (["1.2.3.4" if i % 2 else "::ffff:1.2.3.4" for i in range(accounts.MAX_ADDRESS_FAILURES)],
     "1.2.3.4"),
    (["::ffff:1.2.3.4"] * accounts.MAX_ADDRESS_FAILURES, "1.2.3.4"),
])
def test_address_limit_counts_the_ipv6_64_and_mapped_ipv4(
        harness: ClinicHarness, failing: list[str], then: str) -> None:  # noqa: F811
    clinic = harness.clinic
    _fail_logins(clinic, failing)
    with clinic.db.session() as s:
        assert accounts.retry_after_s(s, "someone-else", then) > 0
        # another /64, another IPv4 address: not locked
        assert accounts.retry_after_s(s, "someone-else", "2001:db8:1:99::1") == 0
        assert accounts.retry_after_s(s, "someone-else", "1.2.3.5") == 0


def test_csp_forbids_base_off_site_forms_and_plugins(tmp_path: Path) -> None:
    with served_clinic(tmp_path) as h:
        for path in ("/", f"{API}/auth/me", f"{API}/docs"):
            csp = h.client.get(path).headers["content-security-policy"]
            directives = {d.strip() for d in csp.split(";")}
            assert {"base-uri 'none'", "form-action 'self'", "object-src 'none'",
                    "frame-ancestors 'none'"} <= directives, (path, csp)
