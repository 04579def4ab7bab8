"""The ``epp`` registrar driver: the panel's intent as EPP commands to the tenant's registry account.

Each call is one EPP session (connect, greeting, login, commands, logout) with the account in the
tenant's domain settings. The registrant is a contact made from the domain's customer (id
``mp`` + 12 hex digits of the customer's id: stable, so a job that runs again finds the contact it
made); the admin/tech/billing roles take the tenant's own handles where it set them.
"""

from __future__ import annotations

import secrets
from datetime import date

from . import crypto, epp
from .models import DomainSettings
from .registrars import DRIVERS, Registrar, RegistrarError, RegistrarState, add_years


def config_for(tenant) -> epp.EppConfig:
    conf = DomainSettings.objects.filter(tenant=tenant).first()
    if conf is None or not conf.epp_configured:
        raise RegistrarError(
            "This tenant has no EPP account: set its host, client id and password in the domain settings."
        )
    try:
        password = crypto.decrypt(conf.epp_password_encrypted)
        key = crypto.decrypt(conf.epp_client_key_encrypted) if conf.epp_client_key_encrypted else ""
    except crypto.UndecryptableSecret as exc:
        raise RegistrarError("The EPP password cannot be decrypted with this SECRET_KEY: enter it again.") from exc
    return epp.EppConfig(host=conf.epp_host, port=conf.epp_port, client_id=conf.epp_client_id, password=password,
                         cert_pem=conf.epp_client_cert, key_pem=key, ca_pem=conf.epp_ca_cert,
                         trid_prefix=f"MP{conf.epp_client_id}"[:24])  # fmt: skip


def contact_id(customer) -> str:
    # RFC 5730 clIDType: 3 to 16 characters.
    return f"mp{customer.pk.hex[:12]}"


def contacts_of(tenant, registrant: str) -> dict[str, str]:
    conf = DomainSettings.objects.filter(tenant=tenant).first()
    return {
        "admin": (conf and conf.epp_admin_contact) or registrant,
        "tech": (conf and conf.epp_tech_contact) or registrant,
        "billing": (conf and conf.epp_billing_contact) or registrant,
    }


@DRIVERS.register("epp")
class EppRegistrar(Registrar):
    name = "epp"

    def session(self, domain) -> epp.EppClient:
        return epp.EppClient(config_for(domain.tenant))

    def register(self, domain, *, years, nameservers, expires_at=None):
        customer = domain.customer
        if customer is None:
            raise RegistrarError("A domain registered at a registry needs a customer (its registrant).")
        if not (customer.city and customer.country):
            raise RegistrarError("The registrant's address is incomplete: the customer needs a city and a country.")
        auth_info = secrets.token_urlsafe(12)  # the transfer code, kept encrypted on the domain
        with self.session(domain) as client:
            available = client.domain_check([domain.name]).get(domain.name)
            if available is None:
                raise epp.EppProtocolError(f"domain:check did not answer for {domain.name}")
            if not available[0]:
                raise RegistrarError(f"{domain.name} is not available at the registry ({available[1] or 'in use'}).")
            registrant = client.contact_create(
                contact_id(customer), name=customer.name, org=customer.company, email=customer.email,
                street=[customer.address_line1, customer.address_line2], city=customer.city, state=customer.state,
                postal_code=customer.postal_code, country=str(customer.country), voice=customer.phone,
                auth_info=secrets.token_urlsafe(12),
            )  # fmt: skip
            created, expires = client.domain_create(domain.name, years=years, registrant=registrant,
                                                    contacts=contacts_of(domain.tenant, registrant),
                                                    nameservers=nameservers, auth_info=auth_info)  # fmt: skip
        created = created or date.today()
        return RegistrarState(expires_at=expires or add_years(created, years), nameservers=list(nameservers),
                              registered_at=created, auth_info=auth_info)  # fmt: skip

    def renew(self, domain, *, years, today):
        with self.session(domain) as client:
            current = domain.expires_at
            if current is None:
                # The registry's date is the truth (curExpDate must match it exactly).
                current = client.domain_info(domain.name).expires
            if current is None:
                raise RegistrarError("The registry answers no expiry for this domain: it cannot be renewed.")
            expires = client.domain_renew(domain.name, current_expiry=current, years=years)
        return RegistrarState(expires_at=expires or add_years(current, years), nameservers=list(domain.nameservers))

    def set_nameservers(self, domain, *, nameservers):
        with self.session(domain) as client:
            info = client.domain_info(domain.name)
            have, want = set(info.nameservers), [ns.lower() for ns in nameservers]
            add = [ns for ns in want if ns not in have]
            rem = [ns for ns in info.nameservers if ns not in set(want)]
            if add or rem:
                client.domain_update(domain.name, add_ns=add, rem_ns=rem)
        return RegistrarState(expires_at=info.expires or domain.expires_at, nameservers=want)

    def transfer_out(self, domain):
        """Lift our transfer lock; the gaining registrar requests the transfer with the domain's code."""
        with self.session(domain) as client:
            info = client.domain_info(domain.name)
            if "clientTransferProhibited" in info.statuses:
                client.domain_update(domain.name, rem_status=["clientTransferProhibited"])
        return None
