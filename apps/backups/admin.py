"""Backups in the operators' console: repositories with their sizes and last check, policies with
their last run and last drill as badges, snapshots with a confirmed "Restore" button, restores and
drills (read-only). Every write goes through the same services as the API; a repository's password
is never shown here."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.template.defaultfilters import filesizeformat

from apps.common.admin import ObjectAction, ReadOnlyAdmin, status_column
from apps.common.display import badge, when
from apps.jobs.admin import ServiceAdmin, ServiceForm, tenant_from
from apps.nodes.models import Node, with_role

from . import services
from .models import Backend, BackupPolicy, BackupRepository, Drill, Restore, Snapshot, SnapshotStatus


def _size(value) -> str:
    return filesizeformat(value) if value is not None else "—"


REPO_SETTINGS = ["sftp_host", "sftp_port", "sftp_user", "sftp_path", "sftp_host_key", "s3_endpoint", "s3_bucket",
                 "s3_region", "s3_access_key_id"]  # fmt: skip


class RepositoryAddForm(ServiceForm):
    """The backend and its settings; the secrets are write-only fields (never shown again)."""

    sftp_private_key = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off"}), required=False, strip=False,
        help_text="sftp: an OpenSSH private key without a passphrase. Empty: mPanel makes an Ed25519 key and shows "
                  "its public half to put in the user's authorized_keys.",
    )  # fmt: skip
    s3_secret_key = forms.CharField(widget=forms.PasswordInput(render_value=False), required=False, strip=False,
                                    help_text="s3: kept encrypted, never shown again.")  # fmt: skip
    backend = forms.ChoiceField(choices=Backend.choices, initial=Backend.LOCAL, required=False)
    sftp_port = forms.IntegerField(min_value=1, max_value=65535, required=False, help_text="sftp: 22 unless set.")

    class Meta:
        model = BackupRepository
        fields = ["tenant", "name", "node", "backend", *REPO_SETTINGS]

    def act(self, data, actor):
        backend = data.get("backend") or Backend.LOCAL
        settings_ = {k: data.get(k) for k in [*REPO_SETTINGS, "sftp_private_key", "s3_secret_key"]
                     if k.startswith(f"{backend}_") and data.get(k) not in (None, "")}  # fmt: skip
        return services.repository_create(tenant=data["tenant"], name=data["name"], node=data["node"],
                                          backend=backend, actor=actor, **settings_)  # fmt: skip


class RepositoryConnectionForm(forms.Form):
    """An SFTP or S3 repository's connection; an empty secret keeps the one stored."""

    sftp_host = forms.CharField(required=False)
    sftp_port = forms.IntegerField(required=False, min_value=1, max_value=65535)
    sftp_user = forms.CharField(required=False)
    sftp_path = forms.CharField(required=False)
    sftp_host_key = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    sftp_private_key = forms.CharField(required=False, strip=False,
                                       widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off"}))  # fmt: skip
    s3_endpoint = forms.CharField(required=False)
    s3_bucket = forms.CharField(required=False)
    s3_region = forms.CharField(required=False)
    s3_access_key_id = forms.CharField(required=False)
    s3_secret_key = forms.CharField(required=False, strip=False, widget=forms.PasswordInput(render_value=False))


def _connection_initial(repo: BackupRepository) -> dict:
    return {k: getattr(repo, k) for k in REPO_SETTINGS if k.startswith(f"{repo.backend}_")}


@admin.register(BackupRepository)
class BackupRepositoryAdmin(ServiceAdmin):
    list_display = ["name", "backend", "node", "status_shown", "stored", "deduplicated", "snapshot_count",
                    "last_check", "last_test", "tenant"]  # fmt: skip
    list_filter = ["status", "backend", "last_check_ok", "tenant"]
    search_fields = ["name", "id", "sftp_host", "s3_bucket"]
    list_select_related = ["node", "tenant"]
    add_form = RepositoryAddForm
    add_fields = ["tenant", "name", "node", "backend", *REPO_SETTINGS, "sftp_private_key", "s3_secret_key"]
    shown_fields = ["tenant", "name", "node", "backend", "location", *REPO_SETTINGS, "sftp_public_key", "status",
                    "size_bytes", "raw_bytes", "snapshot_count", "last_check_at", "last_check_ok", "last_check_output",
                    "last_test_at", "last_test_ok", "last_test_output", "last_error"]  # fmt: skip
    object_actions = [
        ObjectAction(
            "check", "Check now", method="check_one", help="restic check, reading the next twelfth of the data (a job)."
        ),
        ObjectAction(
            "test", "Test connection", method="test_one",
            help="The repository's node opens it (restic cat config, a job); the outcome is on this page.",
        ),
        ObjectAction(
            "connection", "Change connection", method="connection_one", form=RepositoryConnectionForm,
            initial=_connection_initial, show=lambda repo: repo.backend != "local",
            help="A moved server, a new host key, rotated keys. An empty secret keeps the one stored.",
        ),
    ]  # fmt: skip

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if "node" in form.base_fields:
            tenant = tenant_from(request)
            nodes = Node.all_tenants.filter(with_role("backup")).select_related("tenant")
            form.base_fields["node"].queryset = nodes.filter(tenant=tenant) if tenant is not None else nodes
        return form

    status_shown = status_column(description="status")

    @admin.display(description="stored", ordering="size_bytes")
    def stored(self, obj):
        return _size(obj.size_bytes)

    @admin.display(description="deduplicated data", ordering="raw_bytes")
    def deduplicated(self, obj):
        return _size(obj.raw_bytes)

    @admin.display(description="last check", ordering="last_check_at")
    def last_check(self, obj):
        if obj.last_check_ok is None:
            return badge(None)
        return badge("active" if obj.last_check_ok else "failed", f"{'OK' if obj.last_check_ok else 'Failed'}, "
                     f"{when(obj.last_check_at)}")  # fmt: skip

    @admin.display(description="connection", ordering="last_test_at")
    def last_test(self, obj):
        if obj.last_test_ok is None:
            return badge(None)
        return badge("active" if obj.last_test_ok else "failed", f"{'OK' if obj.last_test_ok else 'Failed'}, "
                     f"{when(obj.last_test_at)}")  # fmt: skip

    def check_one(self, request, repo, data):
        services.repository_check(repository=repo, actor=request.user)
        return f"Checking {repo}: a job runs restic check."

    def test_one(self, request, repo, data):
        services.repository_test(repository=repo, actor=request.user)
        return f"Testing {repo}: a job opens it from {repo.node}; the outcome is on this page."

    def connection_one(self, request, repo, data):
        mine = {k: v for k, v in data.items() if k.startswith(f"{repo.backend}_")}
        secrets = ("sftp_private_key", "s3_secret_key")
        changes = {k: v for k, v in mine.items() if v not in (None, "") and (k in secrets or getattr(repo, k) != v)}
        services.repository_update(repository=repo, data=changes, actor=request.user)
        return f"{repo}: connection saved." if changes else f"{repo}: nothing changed."


class PolicyForm(ServiceForm):
    class Meta:
        model = BackupPolicy
        fields = ["schedule", "enabled", "keep_last", "keep_daily", "keep_weekly", "keep_monthly",
                  "drill_interval_days", "final_keep_days"]  # fmt: skip

    def act(self, data, actor):
        changes = self.changed(data, self.Meta.fields)
        return services.policy_update(policy=self.instance, data=changes, actor=actor) if changes else self.instance


class PolicyAddForm(ServiceForm):
    resources = forms.CharField(
        widget=forms.Textarea,
        required=False,
        help_text='One per line: "website:<id>", "database:<id>", "mailbox:<id>", "zone:<id>", "pod:<id>".',
    )

    class Meta:
        model = BackupPolicy
        fields = ["tenant", "name", "repository", "schedule", "keep_last", "keep_daily", "keep_weekly",
                  "keep_monthly", "drill_interval_days", "final_keep_days"]  # fmt: skip

    def act(self, data, actor):
        fields = {k: data[k] for k in self.Meta.fields if k != "tenant"}
        fields["resources"] = [line.strip() for line in (data.get("resources") or "").splitlines() if line.strip()]
        return services.policy_create(tenant=data["tenant"], actor=actor, **fields)


@admin.register(BackupPolicy)
class BackupPolicyAdmin(ServiceAdmin):
    list_display = ["name", "repository", "schedule", "enabled", "last_run", "last_drill", "tenant"]
    list_filter = ["enabled", "last_run_status", "last_drill_status", "tenant"]
    search_fields = ["name", "id"]
    list_select_related = ["repository", "tenant"]
    add_form = PolicyAddForm
    form = PolicyForm
    add_fields = ["tenant", "name", "repository", "resources", "schedule", "keep_last", "keep_daily", "keep_weekly",
                  "keep_monthly", "drill_interval_days", "final_keep_days"]  # fmt: skip
    change_fields = PolicyForm.Meta.fields
    shown_fields = ["tenant", "name", "repository", "resources", "customer", "last_run_at", "last_run_status",
                    "last_run_error", "last_drill_at", "last_drill_status", "last_drill_summary"]  # fmt: skip
    object_actions = [
        ObjectAction("run", "Back up now", method="run_one", help="A snapshot of every resource of the policy."),
        ObjectAction(
            "drill",
            "Drill now",
            method="drill_one",
            help="Restore the latest snapshots into scratch and compare them (a job).",
        ),
    ]

    @admin.display(description="last run", ordering="last_run_at")
    def last_run(self, obj):
        if not obj.last_run_status:
            return badge(None)
        return badge(obj.last_run_status, f"{obj.get_last_run_status_display()}, {when(obj.last_run_at)}")

    @admin.display(description="last drill", ordering="last_drill_at")
    def last_drill(self, obj):
        if not obj.last_drill_status:
            return badge(None)
        return badge(obj.last_drill_status, f"{obj.get_last_drill_status_display()}, {when(obj.last_drill_at)}")

    def run_one(self, request, policy, data):
        made = services.policy_run(policy=policy, actor=request.user)
        return f"{len(made)} snapshot(s) started."

    def drill_one(self, request, policy, data):
        services.drill_start(policy=policy, actor=request.user)
        return f"Drill of {policy} started."


class RestoreNewForm(forms.Form):
    name = forms.CharField(
        required=False, max_length=253,
        help_text="The new resource's name: a website's hostname (default restored-<YYYYMMDD>.<original>), a "
                  "database's suffix (default _restored_<YYYYMMDD>), a mailbox's local part in the same mail domain "
                  "(default <local>-restored-<YYYYMMDD>; its password is random: set one after), a zone's name "
                  "(required) or a pod's name (default <name>-restored-<YYYYMMDD>).",
    )  # fmt: skip


# The restore service's parameter that names a new resource of each kind.
NEW_NAME_FIELD = {"website": "hostname", "database": "suffix"}


@admin.register(Snapshot)
class SnapshotAdmin(ServiceAdmin):
    list_display = ["resource_label", "resource_kind", "reason", "status_shown", "taken", "size", "files",
                    "repository", "tenant"]  # fmt: skip
    list_filter = ["status", "resource_kind", "reason", "tenant"]
    search_fields = ["resource_label", "restic_id", "resource_id"]
    list_select_related = ["repository", "tenant"]
    shown_fields = ["tenant", "repository", "policy", "resource_kind", "resource_id", "resource_label", "reason",
                    "status", "restic_id", "taken_at", "size_bytes", "added_bytes", "files", "keep_until",
                    "last_error"]  # fmt: skip
    object_actions = [
        ObjectAction(
            "restore",
            "Restore",
            method="restore_one",
            confirm="Restore this snapshot in place? A pre-restore snapshot is taken first; the resource's current "
            "content is replaced.",
            style="danger",
            show=lambda snap: snap.status == SnapshotStatus.DONE,
            help="Put the resource back as it was in this snapshot (a job).",
        ),
        ObjectAction(
            "restore_new",
            "Restore to a new resource",
            method="restore_new_one",
            form=RestoreNewForm,
            confirm="Make a new resource of this kind (its app's rules and the plan's limits apply) and restore "
            "this snapshot into it? The original is not touched.",
            show=lambda snap: snap.status == SnapshotStatus.DONE,
            help="A new website, database, mailbox, zone or pod with this snapshot's content (a job).",
        ),
    ]

    def has_add_permission(self, request):
        return False  # a snapshot is taken by a policy or "Back up now"

    status_shown = status_column(description="status")

    @admin.display(description="taken", ordering="taken_at")
    def taken(self, obj):
        return when(obj.taken_at)

    @admin.display(description="size", ordering="size_bytes")
    def size(self, obj):
        return _size(obj.size_bytes)

    def restore_one(self, request, snap, data):
        services.restore_create(snapshot=snap, actor=request.user)
        return f"Restoring {snap.resource_label} from {snap.restic_id[:8]}: a job."

    def restore_new_one(self, request, snap, data):
        named = {NEW_NAME_FIELD.get(snap.resource_kind, "name"): (data.get("name") or "").strip()}
        made = services.restore_create(snapshot=snap, target_id=services.NEW, actor=request.user, **named)
        return f"Restoring {snap.resource_label} from {snap.restic_id[:8]} into the new {made.target_label}: a job."


@admin.register(Restore)
class RestoreAdmin(ReadOnlyAdmin):
    list_display = ["target_label", "target_kind", "in_place", "status_shown", "step", "progress_shown", "created",
                    "tenant"]  # fmt: skip
    list_filter = ["status", "target_kind", "tenant"]
    search_fields = ["target_label", "id"]
    list_select_related = ["tenant"]
    readonly_fields = ["progress_shown"]

    status_shown = status_column(description="status")

    @admin.display(description="progress")
    def progress_shown(self, obj):
        found = services.restore_progress(obj)
        if found is None:
            return "—"
        done, total = found.get("bytes_done"), found.get("bytes_total")
        sizes = f" ({_size(done)} of {_size(total)})" if done is not None and total else ""
        return f"{float(found['percent']):.0f} %{sizes}"

    @admin.display(description="started", ordering="created_at")
    def created(self, obj):
        return when(obj.created_at)


@admin.register(Drill)
class DrillAdmin(ReadOnlyAdmin):
    list_display = ["policy", "status_shown", "created", "finished", "tenant"]
    list_filter = ["status", "tenant"]
    list_select_related = ["policy", "tenant"]

    status_shown = status_column(description="status")

    @admin.display(description="started", ordering="created_at")
    def created(self, obj):
        return when(obj.created_at)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, obj):
        return when(obj.finished_at)
