"""ssl.certificate.* job handlers. The payload is the certificate's id only: no key, no PEM."""

from __future__ import annotations

from apps.jobs.registry import handler

from . import services


@handler(services.ISSUE_JOB)
def issue(job) -> dict:
    return services.issue_run(job)


@handler(services.INSTALL_JOB)
def install(job) -> dict:
    return services.install_run(job)


@handler("ssl.certificate.revoke")
def revoke(job) -> dict:
    return services.revoke_run(job)


@handler("ssl.certificate.delete")
def delete(job) -> dict:
    return services.delete_run(job)


@handler(services.MAIL_JOB)
def install_mail(job) -> dict:
    return services.mail_install_run(job)
