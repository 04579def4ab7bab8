"""Routes of the kernel's test resource (``@pytest.mark.urls("tests.support.gadget_urls")``)."""

from rest_framework.routers import DefaultRouter

from .gadgets import GadgetViewSet, PatchGadgetViewSet, ReadOnlyGadgetViewSet

router = DefaultRouter()
router.register("gadgets", GadgetViewSet, basename="gadget")
router.register("patch-gadgets", PatchGadgetViewSet, basename="patch-gadget")
router.register("readonly-gadgets", ReadOnlyGadgetViewSet, basename="readonly-gadget")

urlpatterns = router.urls
