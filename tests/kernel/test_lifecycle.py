"""The kernel's two bases for provisioned resources: ``apps.jobs.lifecycle.Lifecycle`` (lock, check,
change, audit, job; convergence and failure) and ``apps.tenancy.viewsets.ResourceViewSet`` (routes,
one way to answer, schema from the declarations). Driven through a resource made the documented
way (tests/support/gadgets.py)."""

import pytest
from drf_spectacular.generators import SchemaGenerator

from apps.audit.models import AuditEvent
from apps.jobs import services as jobs
from apps.jobs.models import Job, JobStatus
from apps.tenancy.roles import Role
from apps.tenancy.scoping import all_tenants, tenant_scope
from tests.conftest import client_for
from tests.support import gadget_urls
from tests.support.gadgets import GadgetViewSet, ReadOnlyGadgetViewSet, gadgets
from tests.support.models import Gadget

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.support.gadget_urls")]
S = Gadget.Status


def _admin(t):
    return client_for(t.users[Role.ADMIN], t.tenant)


def _events(obj, action=None):
    with all_tenants():
        qs = AuditEvent.objects.filter(object_id=str(obj.pk)).order_by("created_at")
        if action:
            qs = qs.filter(action=action)
        return list(qs)


def _run_jobs(obj) -> list[str]:
    with all_tenants():
        pending = list(Job.all_tenants.filter(object_id=str(obj.pk), status=JobStatus.PENDING).order_by("created_at"))
    return [jobs.run_job(job.pk) for job in pending]


def _gadget(t, **fields) -> Gadget:
    with tenant_scope(t.tenant):
        return Gadget.objects.create(tenant=t.tenant, **fields)


def test_create_answers_with_the_output_serializer_and_a_job_converges_it(tenant_a):
    response = _admin(tenant_a).post("/gadgets/", {"name": "g1", "size": 2}, format="json")
    assert response.status_code == 201, response.content
    assert set(response.json()) == {"id", "name", "status", "size"} and response.json()["status"] == "pending"
    gadget = Gadget.all_tenants.get(pk=response.json()["id"])
    (made,) = _events(gadget, "gadget.create")
    assert made.changes == {"name": [None, "g1"], "status": [None, "pending"], "size": [None, 2]}
    assert made.actor_id == tenant_a.users[Role.ADMIN].pk
    assert _run_jobs(gadget) == ["succeeded"]
    gadget.refresh_from_db()
    assert gadget.status == S.ACTIVE
    assert _events(gadget, "gadget.active")[0].changes == {"status": ["pending", "active"]}


def test_a_move_is_checked_audited_and_enqueued_once(tenant_a):
    gadget = _gadget(tenant_a, name="g", status=S.ACTIVE)
    client = _admin(tenant_a)
    response = client.post(f"/gadgets/{gadget.pk}/suspend/")
    assert response.status_code == 202 and response.json()["status"] == "suspended"
    (event,) = _events(gadget, "gadget.suspend")
    assert event.changes == {"status": ["active", "suspended"]}
    with all_tenants():
        assert list(Job.all_tenants.filter(object_id=str(gadget.pk)).values_list("type", "payload")) == [
            ("gadget.suspend", {"gadget": str(gadget.pk)})
        ]
    again = client.post(f"/gadgets/{gadget.pk}/suspend/")
    assert again.status_code == 409
    assert "Only an active gadget can be suspended; this one is suspended." in again.content.decode()
    assert len(_events(gadget, "gadget.suspend")) == 1
    with all_tenants():
        assert Job.all_tenants.filter(object_id=str(gadget.pk)).count() == 1


def test_update_and_partial_update_go_through_the_service(tenant_a):
    gadget = _gadget(tenant_a, name="g", status=S.ACTIVE)
    client = _admin(tenant_a)
    assert client.put(f"/gadgets/{gadget.pk}/", {"name": "h", "size": 3}, format="json").json()["size"] == 3
    assert client.patch(f"/gadgets/{gadget.pk}/", {"size": 4}, format="json").json() == {
        "id": str(gadget.pk), "name": "h", "status": "active", "size": 4,
    }  # fmt: skip
    assert [e.changes for e in _events(gadget, "gadget.update")] == [
        {"name": ["g", "h"], "size": [1, 3]},
        {"size": [3, 4]},
    ]
    bad = client.put(f"/gadgets/{gadget.pk}/", {"name": "h", "size": 99}, format="json")
    assert bad.status_code == 400 and "size" in bad.json()
    gadget.refresh_from_db()
    assert gadget.size == 4 and len(_events(gadget, "gadget.update")) == 2


def test_another_tenants_object_is_a_404_before_its_body_is_read(tenant_a, tenant_b):
    foreign = _gadget(tenant_b, name="theirs", status=S.ACTIVE)
    client = _admin(tenant_a)
    assert client.put(f"/gadgets/{foreign.pk}/", {"size": "not a number"}, format="json").status_code == 404
    assert client.delete(f"/gadgets/{foreign.pk}/").status_code == 404
    assert client.post(f"/gadgets/{foreign.pk}/suspend/").status_code == 404
    foreign.refresh_from_db()
    assert foreign.status == S.ACTIVE and _events(foreign) == []


def test_roles_come_from_the_declaration(tenant_a):
    gadget = _gadget(tenant_a, name="g", status=S.ACTIVE)
    member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    assert member.get("/gadgets/").status_code == 200
    assert member.post("/gadgets/", {"name": "x"}, format="json").status_code == 403
    assert member.delete(f"/gadgets/{gadget.pk}/").status_code == 403


def test_destroy_answers_202_and_the_job_finishes_the_removal(tenant_a):
    gadget = _gadget(tenant_a, name="g", status=S.ACTIVE)
    response = _admin(tenant_a).delete(f"/gadgets/{gadget.pk}/")
    assert response.status_code == 202 and response.json()["status"] == "deleting"
    assert _run_jobs(gadget) == ["succeeded"]
    gadget.refresh_from_db()
    assert gadget.status == S.DELETED
    assert _admin(tenant_a).delete(f"/gadgets/{gadget.pk}/").status_code == 409


def test_a_permanent_node_error_fails_the_row_at_once(tenant_a):
    response = _admin(tenant_a).post("/gadgets/", {"name": "refuse-always"}, format="json")
    gadget = Gadget.all_tenants.get(pk=response.json()["id"])
    assert _run_jobs(gadget) == ["failed"]
    gadget.refresh_from_db()
    assert gadget.status == S.ERROR and gadget.last_error == "the node refuses this gadget"
    assert _events(gadget, "gadget.error")[0].changes == {"status": ["pending", "error"]}


def test_a_passing_error_is_retried_and_fails_the_row_only_on_the_last_attempt(tenant_a):
    response = _admin(tenant_a).post("/gadgets/", {"name": "refuse-now"}, format="json")
    gadget = Gadget.all_tenants.get(pk=response.json()["id"])
    with all_tenants():
        job = Job.all_tenants.get(object_id=str(gadget.pk))
        Job.all_tenants.filter(pk=job.pk).update(max_attempts=2)
    assert jobs.run_job(job.pk) == "pending"
    gadget.refresh_from_db()
    assert gadget.status == S.PENDING and gadget.last_error == ""
    Job.all_tenants.filter(pk=job.pk).update(run_after=job.created_at)
    assert jobs.run_job(job.pk) == "failed"
    gadget.refresh_from_db()
    assert gadget.status == S.ERROR and gadget.last_error == "the node refuses this gadget"


def test_an_internal_error_leaves_the_tenant_a_reference_not_the_detail(tenant_a):
    response = _admin(tenant_a).post("/gadgets/", {"name": "crash"}, format="json")
    gadget = Gadget.all_tenants.get(pk=response.json()["id"])
    with all_tenants():
        Job.all_tenants.filter(object_id=str(gadget.pk)).update(max_attempts=1)
    assert _run_jobs(gadget) == ["failed"]
    gadget.refresh_from_db()
    assert gadget.status == S.ERROR
    assert "an internal detail" not in gadget.last_error and "reference" in gadget.last_error


def test_an_error_row_converges_to_the_state_its_job_was_for(tenant_a):
    gadget = _gadget(tenant_a, name="g", status=S.ERROR, last_error="earlier")
    with tenant_scope(tenant_a.tenant):
        gadgets.enqueue(gadget, "gadget.suspend")
    assert _run_jobs(gadget) == ["succeeded"]
    gadget.refresh_from_db()
    assert gadget.status == S.SUSPENDED and gadget.last_error == ""
    assert gadgets.wanted(Gadget(status=S.ERROR), "gadget.unknown") is None
    assert gadgets.wanted(Gadget(status=S.DELETED), "gadget.delete") is None


def test_http_methods_follow_the_hooks_and_actions():
    assert GadgetViewSet.http_method_names == ["get", "post", "put", "patch", "delete", "head", "options"]
    assert ReadOnlyGadgetViewSet.http_method_names == ["get", "head", "options"]


def test_an_unsupported_write_is_a_405(tenant_a):
    client = _admin(tenant_a)
    gadget = _gadget(tenant_a, name="g", status=S.ACTIVE)
    assert client.get("/readonly-gadgets/").status_code == 200
    assert client.post("/readonly-gadgets/", {"name": "x"}, format="json").status_code == 405
    assert client.delete(f"/readonly-gadgets/{gadget.pk}/").status_code == 405
    assert client_for().post("/readonly-gadgets/", {"name": "x"}, format="json").status_code == 401


def test_the_schema_comes_from_the_declarations():
    schema = SchemaGenerator(patterns=gadget_urls.urlpatterns).get_schema(request=None, public=True)
    collection, item = schema["paths"]["/gadgets/"], schema["paths"]["/gadgets/{id}/"]

    def body(op):
        return op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]

    def answer(op, code):
        return op["responses"][code]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]

    assert (body(collection["post"]), answer(collection["post"], "201")) == ("GadgetCreateRequest", "Gadget")
    assert (body(item["put"]), answer(item["put"], "200")) == ("GadgetUpdateRequest", "Gadget")
    assert body(item["patch"]) == "PatchedGadgetUpdateRequest"
    assert answer(item["delete"], "202") == "Gadget"
    assert set(schema["paths"]["/readonly-gadgets/{id}/"]) == {"get"}


def test_another_answer_per_action_with_context_and_the_callers_role(tenant_a):
    member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    response = member.post("/patch-gadgets/", {"name": "g9"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json() == {"id": response.json()["id"], "name": "g9", "ticket": "T-g9", "role": "MEMBER"}
    # The other actions keep the resource's own answer.
    assert set(member.get(f"/patch-gadgets/{response.json()['id']}/").json()) == {"id", "name", "status", "size"}


def test_an_edit_by_patch_alone_reads_a_whole_body_and_put_is_a_405(tenant_a):
    gadget = _gadget(tenant_a, name="g", status=S.ACTIVE)
    client = _admin(tenant_a)
    missing = client.patch(f"/patch-gadgets/{gadget.pk}/", {}, format="json")
    assert missing.status_code == 400 and "size" in missing.json()
    assert client.patch(f"/patch-gadgets/{gadget.pk}/", {"size": 5}, format="json").json()["size"] == 5
    assert client.put(f"/patch-gadgets/{gadget.pk}/", {"size": 6}, format="json").status_code == 405
    removed = client.delete(f"/patch-gadgets/{gadget.pk}/")
    assert removed.status_code == 204 and removed.content == b""
    assert _events(gadget, "gadget.remove")[0].changes == {"status": ["active", "deleted"]}


def test_a_list_answer_and_a_query_read_by_validated(tenant_a):
    for name in ("apple", "apricot", "banana"):
        _gadget(tenant_a, name=name)
    client = client_for(tenant_a.users[Role.VIEWER], tenant_a.tenant)
    found = client.get("/patch-gadgets/find/", {"prefix": "ap"})
    assert found.status_code == 200 and [g["name"] for g in found.json()] == ["apple", "apricot"]
    assert client.get("/patch-gadgets/find/").status_code == 400


def test_the_schema_takes_per_action_answers_summaries_and_update_verbs():
    schema = SchemaGenerator(patterns=gadget_urls.urlpatterns).get_schema(request=None, public=True)
    collection, item = schema["paths"]["/patch-gadgets/"], schema["paths"]["/patch-gadgets/{id}/"]
    created = collection["post"]["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
    assert created.endswith("/GadgetReceipt") and collection["post"]["summary"] == "Make a gadget"
    assert set(item) == {"get", "patch", "delete"}
    assert item["delete"]["summary"] == "Remove the gadget at once" and "204" in item["delete"]["responses"]
    assert "202" not in item["delete"]["responses"]
    patch_body = item["patch"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert patch_body.endswith("/PatchedGadgetSizeRequest")


def test_declaring_http_methods_on_a_resource_is_refused():
    from apps.tenancy.viewsets import ResourceViewSet

    with pytest.raises(TypeError, match="HTTP methods"):
        type("Bad", (ResourceViewSet,), {"http_method_names": ["get"], "__module__": __name__})


# --- the job side's options: a row that is gone, states a failure keeps, errors of retried attempts --


def _check_job(t, gadget, max_attempts=3) -> Job:
    with tenant_scope(t.tenant):
        job = gadgets.enqueue(gadget, "gadget.check")
    Job.all_tenants.filter(pk=job.pk).update(max_attempts=max_attempts)
    return job


def test_a_job_for_a_gone_row_is_skipped_when_asked_and_fails_otherwise(tenant_a):
    gadget = _gadget(tenant_a, name="g", status=S.ACTIVE)
    check = _check_job(tenant_a, gadget)
    with tenant_scope(tenant_a.tenant):
        provision = gadgets.enqueue(gadget, "gadget.provision")
        Gadget.objects.filter(pk=gadget.pk).delete()
    assert jobs.run_job(check.pk) == "succeeded"
    assert Job.all_tenants.get(pk=check.pk).result == {"skipped": "gone"}
    assert jobs.run_job(provision.pk) == "failed"


def test_a_retried_attempt_records_its_error_and_keeps_the_state(tenant_a):
    gadget = _gadget(tenant_a, name="refuse-now", status=S.ACTIVE)
    job = _check_job(tenant_a, gadget, max_attempts=2)
    assert jobs.run_job(job.pk) == "pending"
    gadget.refresh_from_db()
    assert (gadget.status, gadget.last_error) == (S.ACTIVE, "the node refuses this gadget")
    assert _events(gadget) == []
    Job.all_tenants.filter(pk=job.pk).update(run_after=job.created_at)
    assert jobs.run_job(job.pk) == "failed"
    gadget.refresh_from_db()
    assert gadget.status == S.ERROR and _events(gadget, "gadget.error")[0].changes == {"status": ["active", "error"]}


def test_a_failure_keeps_a_kept_state_and_records_only_the_reason(tenant_a):
    gadget = _gadget(tenant_a, name="refuse-always", status=S.DELETING)
    assert jobs.run_job(_check_job(tenant_a, gadget).pk) == "failed"
    gadget.refresh_from_db()
    assert (gadget.status, gadget.last_error) == (S.DELETING, "the node refuses this gadget")
    assert _events(gadget) == []


def test_an_internal_error_of_a_retried_attempt_records_the_reference_only(tenant_a):
    gadget = _gadget(tenant_a, name="crash", status=S.ACTIVE)
    assert jobs.run_job(_check_job(tenant_a, gadget).pk) == "pending"
    gadget.refresh_from_db()
    assert gadget.status == S.ACTIVE
    assert "an internal detail" not in gadget.last_error and "reference" in gadget.last_error


def test_a_permanent_error_of_the_converge_itself_fails_the_job_not_the_row(tenant_a):
    gadget = _gadget(tenant_a, name="not-for-me", status=S.ACTIVE)
    job = _check_job(tenant_a, gadget, max_attempts=1)
    assert jobs.run_job(job.pk) == "failed"
    gadget.refresh_from_db()
    assert (gadget.status, gadget.last_error) == (S.ACTIVE, "")
    assert "does not apply" in Job.all_tenants.get(pk=job.pk).last_error
