from django.conf import settings


def environment(request):
    return {"MPANEL_ENVIRONMENT": settings.MPANEL_ENVIRONMENT}
