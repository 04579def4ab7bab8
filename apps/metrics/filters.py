from django_filters import rest_framework as filters

from apps.nodes.models import ROLE_CHOICES, Node

from . import selectors


class HostingServerFilter(filters.FilterSet):
    role = filters.ChoiceFilter(choices=[(r, r) for r in selectors.HOSTING_ROLES], method="filter_role")

    class Meta:
        model = Node
        fields = ["status"]

    def filter_role(self, queryset, name, value):
        return queryset.filter(selectors.has_role(value))


class ServerMetricsFilter(filters.FilterSet):
    role = filters.ChoiceFilter(choices=[(r, r) for r in ROLE_CHOICES], method="filter_role")

    class Meta:
        model = Node
        fields = ["status"]

    def filter_role(self, queryset, name, value):
        return queryset.filter(selectors.has_role(value))
