"""Licences through `assignedPlans` (advanced query, GUID-checked) and users found by email."""

from __future__ import annotations

import httpx
import pytest

from bot.microsoft.testing import Recorder, harness

USERS = "/v1.0/users"
INTUNE_A = "c1ec4a95-1f05-45b3-a911-aa3fa01094f5"
PLAN_FILTER = (
    f"assignedPlans/any(a:a/servicePlanId eq {INTUNE_A} and a/capabilityStatus eq 'Enabled')"
)


def test_users_with_a_plan_are_read_999_a_page_with_the_advanced_query_header():
    next_link = f"https://graph.microsoft.com{USERS}?$skiptoken=page2"
    pages = {
        None: {"@odata.count": 3, "value": [{"id": "u1"}, {"id": "u2"}], "@odata.nextLink": next_link},
        "page2": {"value": [{"id": "u3"}, {"displayName": "no id"}]},
    }
    rec = Recorder().on("GET", USERS, lambda r: httpx.Response(200, json=pages[r.url.params.get("$skiptoken")]))
    ids = list(harness(rec).clients.graph.iter_user_ids_with_plan(INTUNE_A.upper()))

    assert ids == ["u1", "u2", "u3"]
    first, second = rec.requests
    assert dict(first.url.params) == {"$filter": PLAN_FILTER, "$count": "true", "$select": "id", "$top": "999"}
    assert str(first.url) == (
        "https://graph.microsoft.com/v1.0/users?%24filter=assignedPlans%2Fany%28a%3Aa%2FservicePlanId+eq+"
        f"{INTUNE_A}+and+a%2FcapabilityStatus+eq+%27Enabled%27%29&%24count=true&%24select=id&%24top=999"
    )
    assert str(second.url) == next_link
    assert first.headers["ConsistencyLevel"] == "eventual"
    assert second.headers["ConsistencyLevel"] == "eventual"


@pytest.mark.parametrize("plan", [
    "INTUNE_A",
    "",
    f"{INTUNE_A}) or true or (1 eq 1",
    f"'{INTUNE_A}'",
    INTUNE_A[:-1],
    f"{{{INTUNE_A}}}",
])
def test_a_service_plan_id_must_be_a_guid_before_it_goes_into_a_filter(plan):
    rec = Recorder()
    with pytest.raises(ValueError, match="GUID"):
        harness(rec).clients.graph.iter_user_ids_with_plan(plan)  # at the call, before any iteration
    assert rec.requests == []


def user(uid: str, mail: str | None, upn: str) -> dict[str, object]:
    return {"id": uid, "displayName": uid.upper(), "mail": mail, "userPrincipalName": upn}


def test_find_users_by_email_asks_mail_or_upn_and_returns_every_match():
    rec = Recorder().on(
        "GET", USERS,
        httpx.Response(200, json={"value": [user("u1", "ann@contoso.com", "ann@contoso.com"),
                                            user("u2", None, "ann@contoso.com")]}),
    )
    found = harness(rec).clients.graph.find_users_by_email("  ann@contoso.com ")

    assert [u.id for u in found] == ["u1", "u2"]
    assert found[0].mail == "ann@contoso.com" and found[1].userPrincipalName == "ann@contoso.com"
    (request,) = rec.requests
    assert dict(request.url.params) == {
        "$filter": "mail eq 'ann@contoso.com' or userPrincipalName eq 'ann@contoso.com'",
        "$select": "id,displayName,mail,userPrincipalName",
        "$top": "5",
    }
    assert "ConsistencyLevel" not in request.headers


def test_find_users_by_email_doubles_quotes_and_none_is_an_empty_list():
    rec = Recorder().on("GET", USERS, httpx.Response(200, json={"value": []}))
    assert harness(rec).clients.graph.find_users_by_email("o'brien@contoso.com") == []
    assert rec.requests[0].url.params["$filter"] == (
        "mail eq 'o''brien@contoso.com' or userPrincipalName eq 'o''brien@contoso.com'"
    )


@pytest.mark.parametrize("email", ["", "   ", "a" * 310 + "@contoso.com", "ann\n@contoso.com", "a b@contoso.com"])
def test_find_users_by_email_rejects_empty_or_unreasonable_input(email):
    rec = Recorder()
    with pytest.raises(ValueError):
        harness(rec).clients.graph.find_users_by_email(email)
    assert rec.requests == []


def test_enabled_plans_reads_each_users_assigned_plans_in_batches_and_counts_the_grace_period():
    import json

    plans = [{"servicePlanId": INTUNE_A.upper(), "capabilityStatus": "Warning"},
             {"servicePlanId": "871d91ec-ec1a-452b-a83f-bd76c7d770ef", "capabilityStatus": "Enabled"},
             {"servicePlanId": "292cc034-7b7c-4950-aaf5-943befd3f1d4", "capabilityStatus": "Suspended"},
             {"servicePlanId": "bfc1bbd9-981b-4f71-9b82-17c35fd0e2a4", "capabilityStatus": "Deleted"}]

    def batch(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert len(body["requests"]) <= 20
        return httpx.Response(200, json={"responses": [
            {"id": r["id"], "status": 200, "body": {"id": r["url"].split("/")[2].split("?")[0],
                                                    "assignedPlans": plans}} for r in body["requests"]]})

    rec = Recorder().on("POST", "/v1.0/$batch", batch)
    found = harness(rec).clients.graph.enabled_plans([f"u{n}" for n in range(25)])

    assert len(rec.requests) == 2 and len(found) == 25
    assert found["u3"] == {INTUNE_A, "871d91ec-ec1a-452b-a83f-bd76c7d770ef"}  # Warning (grace) counts; not
    first = json.loads(rec.requests[0].content)["requests"][0]                  # Suspended or Deleted
    assert first["url"] == "/users/u0?$select=id,assignedPlans"
