import django_filters

from .models import EventType, FindingStatus, GuardianFinding, SecurityEvent, Severity, ShieldEvent


class SecurityEventFilter(django_filters.FilterSet):
    user = django_filters.UUIDFilter(field_name="user_id")
    type = django_filters.MultipleChoiceFilter(choices=EventType.choices)
    type_prefix = django_filters.CharFilter(field_name="type", lookup_expr="startswith")
    reason = django_filters.CharFilter()
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = SecurityEvent
        fields = ["user", "type", "reason"]


class ShieldEventFilter(django_filters.FilterSet):
    rule = django_filters.CharFilter()
    site = django_filters.CharFilter()
    website = django_filters.UUIDFilter(field_name="website_id")
    occurred_after = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = ShieldEvent
        fields = ["rule", "site", "website"]


class GuardianFindingFilter(django_filters.FilterSet):
    check = django_filters.CharFilter(field_name="check_name")
    status = django_filters.MultipleChoiceFilter(choices=FindingStatus.choices)
    severity = django_filters.MultipleChoiceFilter(choices=Severity.choices)

    class Meta:
        model = GuardianFinding
        fields = ["check", "status", "severity", "resource_type", "resource_id"]
