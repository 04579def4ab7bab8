"""The portal's pages: ``/portal/<tenant-slug>/…`` (mounted by mpanel/urls.py)."""

from django.urls import path

from . import payment_views, service_views, views

app_name = "portal"

urlpatterns = [
    path("<slug:tenant_slug>/", views.index, name="index"),
    path("<slug:tenant_slug>/login/", views.login_view, name="login"),
    path("<slug:tenant_slug>/logout/", views.logout_view, name="logout"),
    path("<slug:tenant_slug>/invitation/<str:token>/", views.invitation, name="invitation"),
    path("<slug:tenant_slug>/reset/", views.reset_request, name="reset"),
    path("<slug:tenant_slug>/reset/<str:token>/", views.reset_confirm, name="reset-confirm"),
    path("<slug:tenant_slug>/signup/", views.signup, name="signup"),
    path("<slug:tenant_slug>/verify/<str:token>/", views.verify, name="verify"),
    path("<slug:tenant_slug>/catalog/", views.catalog, name="catalog"),
    path("<slug:tenant_slug>/i/<str:token>/", views.invoice_link, name="invoice-link"),
    path("<slug:tenant_slug>/invoices/<uuid:pk>/paid/", views.invoice_paid, name="invoice-paid"),
    # logged in
    path("<slug:tenant_slug>/dashboard/", views.dashboard, name="dashboard"),
    path("<slug:tenant_slug>/invoices/", views.invoices, name="invoices"),
    path("<slug:tenant_slug>/invoices/<uuid:pk>/", views.invoice_detail, name="invoice"),
    path("<slug:tenant_slug>/invoices/<uuid:pk>/pdf/", views.invoice_pdf, name="invoice-pdf"),
    path("<slug:tenant_slug>/invoices/<uuid:pk>/pay/", views.invoice_pay, name="invoice-pay"),
    path("<slug:tenant_slug>/services/", views.service_list, name="services"),
    path("<slug:tenant_slug>/services/<uuid:pk>/", views.service_detail, name="service"),
    path("<slug:tenant_slug>/services/<uuid:pk>/change/", views.service_change, name="service-change"),
    path("<slug:tenant_slug>/services/<uuid:pk>/cancel/", views.service_cancel, name="service-cancel"),
    path("<slug:tenant_slug>/pods/<uuid:pk>/<str:action>/", views.pod_action, name="pod-action"),
    path("<slug:tenant_slug>/mailboxes/<uuid:pk>/password/", views.mailbox_password, name="mailbox-password"),
    path("<slug:tenant_slug>/domains/<uuid:pk>/auto-renew/", views.domain_auto_renew, name="domain-auto-renew"),
    path("<slug:tenant_slug>/order/<uuid:product_pk>/", views.order_configure, name="order-configure"),
    path("<slug:tenant_slug>/cart/", views.cart, name="cart"),
    path("<slug:tenant_slug>/checkout/", views.checkout, name="checkout"),
    path("<slug:tenant_slug>/orders/", views.orders, name="orders"),
    path("<slug:tenant_slug>/orders/<uuid:pk>/", views.order_detail, name="order"),
    path("<slug:tenant_slug>/profile/", views.profile, name="profile"),
    path("<slug:tenant_slug>/users/", views.users, name="users"),
    path("<slug:tenant_slug>/users/<uuid:pk>/role/", views.user_role, name="user-role"),
    path("<slug:tenant_slug>/users/<uuid:pk>/remove/", views.user_remove, name="user-remove"),
    path("<slug:tenant_slug>/security/", views.security, name="security"),
    path("<slug:tenant_slug>/sessions/<uuid:pk>/revoke/", views.session_revoke, name="session-revoke"),
]

# Payment methods: saved cards (apps/portal/payment_views.py).
urlpatterns += [
    path("<slug:tenant_slug>/payment-methods/", payment_views.payment_methods, name="payment-methods"),
    path("<slug:tenant_slug>/payment-methods/add/", payment_views.payment_method_add, name="payment-method-add"),
    path(
        "<slug:tenant_slug>/payment-methods/<uuid:pk>/default/",
        payment_views.payment_method_default,
        name="payment-method-default",
    ),
    path(
        "<slug:tenant_slug>/payment-methods/<uuid:pk>/remove/",
        payment_views.payment_method_remove,
        name="payment-method-remove",
    ),
]

# The service pages of apps/portal/service_views.py (kept apart from views.py).
urlpatterns += [
    path("<slug:tenant_slug>/pod-rows/<uuid:pk>/", service_views.pod_row, name="pod-row"),
    path("<slug:tenant_slug>/databases/", service_views.databases, name="databases"),
    path(
        "<slug:tenant_slug>/database-users/<uuid:pk>/password/",
        service_views.database_password,
        name="database-password",
    ),
    path("<slug:tenant_slug>/contacts/", service_views.contacts, name="contacts"),
    path("<slug:tenant_slug>/contacts/<uuid:pk>/", service_views.contact_edit, name="contact"),
    path("<slug:tenant_slug>/contacts/<uuid:pk>/remove/", service_views.contact_remove, name="contact-remove"),
    path(
        "<slug:tenant_slug>/services/<uuid:pk>/cancel/confirm/",
        service_views.service_cancel_confirm,
        name="service-cancel-confirm",
    ),
]
