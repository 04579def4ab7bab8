"""A provisioned resource made the documented way (docs/architecture.md, "Adding a provisioned
resource"): a model with its states, a Lifecycle, thin services, a job handler and a short viewset.
The kernel's tests drive it; it is installed by mpanel.settings_test only."""

from __future__ import annotations

from django.db import transaction
from rest_framework import serializers
from rest_framework.decorators import action

from apps.audit import services as audit
from apps.jobs.lifecycle import Lifecycle, Move
from apps.jobs.registry import PermanentError, handler
from apps.tenancy.roles import Role
from apps.tenancy.viewsets import ResourceViewSet

from .models import Gadget

S = Gadget.Status


class NodeSaysNo(Exception):
    """Stands for a node's error: it says whether retrying can help."""

    def __init__(self, message: str, *, permanent: bool):
        super().__init__(message)
        self.message = message
        self.permanent = permanent


gadgets: Lifecycle[Gadget] = Lifecycle(
    model=Gadget,
    kind="gadget",
    payload_key="gadget",
    noun="gadget",
    related=("tenant",),
    moves={
        "suspend": Move(
            to=S.SUSPENDED, sources={S.ACTIVE}, refusal="Only an active gadget can be suspended; this one is {status}."
        ),
        "resume": Move(
            to=S.ACTIVE, sources={S.SUSPENDED}, refusal="Only a suspended gadget can be resumed; this one is {status}."
        ),
        "delete": Move(to=S.DELETING, not_from={S.DELETING, S.DELETED}, refusal="This gadget is {status} already."),
    },
    job_targets={
        "gadget.provision": S.ACTIVE,
        "gadget.suspend": S.SUSPENDED,
        "gadget.resume": S.ACTIVE,
        "gadget.delete": S.DELETING,
    },
)


@transaction.atomic
def gadget_create(*, tenant, name: str, size: int = 1, actor=None) -> Gadget:
    gadget = Gadget.objects.create(tenant=tenant, name=name, size=size)
    audit.created(gadget, "gadget.create", actor=actor)
    gadgets.enqueue(gadget, "gadget.provision", actor=actor)
    return gadget


@transaction.atomic
def gadget_update(*, gadget: Gadget, data: dict, actor=None) -> Gadget:
    gadget = gadgets.locked(gadget)
    with audit.change(gadget, "gadget.update", actor=actor):
        for name, value in data.items():
            setattr(gadget, name, value)
        gadget.save()
    return gadget


def converge(gadget: Gadget, job_type: str) -> dict:
    wanted = gadgets.wanted(gadget, job_type)
    if wanted is None:
        return {"skipped": gadget.status}
    if gadget.name.startswith("refuse"):
        raise NodeSaysNo("the node refuses this gadget", permanent=gadget.name == "refuse-always")
    if gadget.name.startswith("crash"):
        raise KeyError("an internal detail")
    if wanted == S.DELETING:
        gadgets.converged(gadget, S.DELETED)
    else:
        gadgets.converged(gadget, S.ACTIVE if wanted in (S.PENDING, S.ACTIVE) else wanted)
    return {"state": gadget.status}


@handler("gadget.provision")
@handler("gadget.suspend")
@handler("gadget.resume")
@handler("gadget.delete")
def run(job) -> dict:
    return gadgets.run_job(job, converge)


def check(gadget: Gadget, job_type: str) -> dict:
    """A check that leaves the gadget's state alone (the options of ``run_job``)."""
    if gadget.name == "not-for-me":
        raise PermanentError("This check does not apply to this gadget.")
    if gadget.name.startswith("refuse"):
        raise NodeSaysNo("the node refuses this gadget", permanent=gadget.name == "refuse-always")
    if gadget.name.startswith("crash"):
        raise KeyError("an internal detail")
    return {"checked": gadget.name}


@handler("gadget.check")
def run_check(job) -> dict:
    return gadgets.run_job(job, check, on_missing="skip", keep={S.DELETING}, record_retry_errors=True)


class GadgetSerializer(serializers.ModelSerializer):
    class Meta:
        model = Gadget
        fields = ["id", "name", "status", "size"]


class GadgetCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=50)
    size = serializers.IntegerField(min_value=1, max_value=10, default=1)


class GadgetUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=50)
    size = serializers.IntegerField(min_value=1, max_value=10)


class GadgetViewSet(ResourceViewSet):
    queryset = Gadget.objects.order_by("name")
    serializer_class = GadgetSerializer
    input_serializers = {"create": GadgetCreateSerializer, "update": GadgetUpdateSerializer}
    required_roles = {"list": Role.MEMBER, "retrieve": Role.MEMBER, "create": Role.ADMIN, "update": Role.ADMIN,
                      "partial_update": Role.ADMIN, "destroy": Role.ADMIN, "suspend": Role.ADMIN}  # fmt: skip

    def create_resource(self, data):
        return gadget_create(tenant=self.tenant, actor=self.request.user, **data)

    def update_resource(self, obj, data):
        return gadget_update(gadget=obj, data=data, actor=self.request.user)

    def destroy_resource(self, obj):
        return gadgets.move(obj, "delete", actor=self.request.user)

    @action(detail=True, methods=["post"])
    def suspend(self, request, pk=None):
        return self.answer(gadgets.move(self.get_object(), "suspend", actor=request.user), 202)


class GadgetReceiptSerializer(serializers.ModelSerializer):
    """Another answer: what a create tells once (``ticket`` comes from the answer's context)."""

    ticket = serializers.SerializerMethodField()
    role = serializers.SerializerMethodField()

    class Meta:
        model = Gadget
        fields = ["id", "name", "ticket", "role"]

    def get_ticket(self, gadget) -> str | None:
        return self.context.get("ticket")

    def get_role(self, gadget) -> str | None:
        return self.context.get("role")


class GadgetSizeSerializer(serializers.Serializer):
    size = serializers.IntegerField(min_value=1, max_value=10)


class GadgetFindSerializer(serializers.Serializer):
    prefix = serializers.CharField(max_length=50)


class PatchGadgetViewSet(ResourceViewSet):
    """Edited by PATCH alone with a whole body, created with another answer, deleted with a 204."""

    queryset = Gadget.objects.order_by("name")
    serializer_class = GadgetSerializer
    input_serializers = {"create": GadgetCreateSerializer, "update": GadgetSizeSerializer}
    output_serializers = {"create": GadgetReceiptSerializer}
    update_methods = {"patch": False}
    destroy_answers_object = False
    summaries = {"create": "Make a gadget", "destroy": "Remove the gadget at once"}
    required_roles = {"list": Role.VIEWER, "retrieve": Role.VIEWER, "create": Role.MEMBER,
                      "partial_update": Role.ADMIN, "destroy": Role.ADMIN, "find": Role.VIEWER}  # fmt: skip

    def create_resource(self, data):
        gadget = gadget_create(tenant=self.tenant, actor=self.request.user, **data)
        self.add_answer_context(ticket=f"T-{gadget.name}", role=self.tenant_role)
        return gadget

    def update_resource(self, obj, data):
        return gadget_update(gadget=obj, data=data, actor=self.request.user)

    def destroy_resource(self, obj):
        with audit.change(obj, "gadget.remove"):
            obj.status = S.DELETED
            obj.save()
        return None

    @action(detail=False, methods=["get"])
    def find(self, request):
        prefix = self.validated(GadgetFindSerializer, data=request.query_params)["prefix"]
        return self.answer(self.get_queryset().filter(name__startswith=prefix), many=True)


class ReadOnlyGadgetViewSet(ResourceViewSet):
    queryset = Gadget.objects.order_by("name")
    serializer_class = GadgetSerializer
    required_roles = {"list": Role.VIEWER, "retrieve": Role.VIEWER}
