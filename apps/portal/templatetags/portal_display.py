"""Template filters over ``apps.common.display``: every amount, status and time a customer sees."""

from django import template

from apps.common import display

register = template.Library()


@register.filter
def money(amount, currency):
    return display.money(amount, currency)


@register.filter
def badge(status):
    return display.badge(status)


@register.filter
def when(value):
    return display.when(value)
