"""The portal's forms: input checks only; the services decide and write."""

from __future__ import annotations

from django import forms
from django_countries.fields import CountryField

from apps.catalog.models import Cycle

from .models import PortalRole


class LoginForm(forms.Form):
    email = forms.EmailField(label="Email address", widget=forms.EmailInput(attrs={"autocomplete": "username"}))
    password = forms.CharField(label="Password", widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))
    code = forms.CharField(
        label="Two-factor code",
        required=False,
        max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


class SetPasswordForm(forms.Form):
    password = forms.CharField(
        label="New password",
        min_length=10,
        max_length=256,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label="New password again", max_length=256, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )

    def clean(self):
        data = super().clean()
        if data.get("password") and data.get("password") != data.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        return data


class InvitationForm(SetPasswordForm):
    name = forms.CharField(
        label="Your name", required=False, max_length=200, widget=forms.TextInput(attrs={"autocomplete": "name"})
    )


class EmailForm(forms.Form):
    email = forms.EmailField(label="Email address", widget=forms.EmailInput(attrs={"autocomplete": "email"}))


class SignUpForm(SetPasswordForm):
    name = forms.CharField(label="Your name", max_length=200, widget=forms.TextInput(attrs={"autocomplete": "name"}))
    email = forms.EmailField(label="Email address", widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    company = forms.CharField(label="Company (optional)", required=False, max_length=200)
    country = CountryField(blank=True).formfield(label="Country (for tax)", required=False)


class PasswordChangeForm(SetPasswordForm):
    current_password = forms.CharField(
        label="Current password", max_length=256, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )

    field_order = ["current_password", "password", "password2"]


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code from your authenticator app",
        max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


class PasswordOnlyForm(forms.Form):
    password = forms.CharField(label="Your password", max_length=256, widget=forms.PasswordInput)


class InviteForm(forms.Form):
    email = forms.EmailField(label="Email address")
    name = forms.CharField(label="Name", required=False, max_length=200)
    role = forms.ChoiceField(label="Role", choices=PortalRole.choices)


class RoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=PortalRole.choices)


class ProfileForm(forms.Form):
    name = forms.CharField(label="Name", max_length=200)
    company = forms.CharField(label="Company", required=False, max_length=200)
    billing_email = forms.EmailField(label="Billing email (invoices go here; blank: the main address)", required=False)
    phone = forms.CharField(label="Phone", required=False, max_length=40)
    tax_id = forms.CharField(label="VAT / tax id", required=False, max_length=64)
    address_line1 = forms.CharField(label="Address", required=False, max_length=200)
    address_line2 = forms.CharField(label="Address (line 2)", required=False, max_length=200)
    city = forms.CharField(label="City", required=False, max_length=100)
    postal_code = forms.CharField(label="Postal code", required=False, max_length=20)
    country = CountryField(blank=True).formfield(label="Country", required=False)


class CartItemForm(forms.Form):
    product = forms.UUIDField(widget=forms.HiddenInput)
    cycle = forms.ChoiceField(label="Billing cycle", choices=Cycle.choices)
    quantity = forms.IntegerField(label="Quantity", min_value=1, max_value=100, initial=1)
    domain = forms.CharField(label="Domain name", required=False, max_length=253)


class MailboxPasswordForm(forms.Form):
    password = forms.CharField(
        label="New mailbox password",
        min_length=10,
        max_length=256,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )


class ChangePlanForm(forms.Form):
    product = forms.UUIDField(label="New plan")
    quantity = forms.IntegerField(label="Quantity", min_value=1, max_value=100)
