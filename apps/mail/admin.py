from django.contrib import admin

from apps.common.admin import ReadOnlyAdmin

from .models import Alias, Autoresponder, Mailbox, MailDomain


@admin.register(MailDomain)
class MailDomainAdmin(ReadOnlyAdmin):
    """Read-only: changes go through the services (validation, hashing, the node push)."""

    list_display = ["name", "status", "node", "catch_all", "dkim_selector", "created_at", "tenant"]
    list_filter = ["status", "tenant"]
    search_fields = ["name", "id"]
    list_select_related = ["node", "tenant"]
    exclude = ["dkim_secret_pem"]
    show_full_result_count = False


@admin.register(Mailbox)
class MailboxAdmin(ReadOnlyAdmin):
    list_display = ["local_part", "mail_domain", "quota_mb", "enabled", "tenant"]
    list_filter = ["enabled", "tenant"]
    search_fields = ["local_part", "mail_domain__name"]
    list_select_related = ["mail_domain", "tenant"]
    exclude = ["password_hash"]
    show_full_result_count = False


@admin.register(Alias)
class AliasAdmin(ReadOnlyAdmin):
    list_display = ["local_part", "mail_domain", "destinations", "tenant"]
    search_fields = ["local_part", "mail_domain__name"]
    list_select_related = ["mail_domain", "tenant"]
    list_filter = ["tenant"]
    show_full_result_count = False


@admin.register(Autoresponder)
class AutoresponderAdmin(ReadOnlyAdmin):
    list_display = ["mailbox", "enabled", "subject", "start_date", "end_date", "interval_days", "tenant"]
    list_filter = ["enabled", "tenant"]
    search_fields = ["mailbox__local_part", "mailbox__mail_domain__name", "subject"]
    list_select_related = ["mailbox__mail_domain", "tenant"]
    show_full_result_count = False
