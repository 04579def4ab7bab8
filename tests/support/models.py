from django.db import models


class JobEffect(models.Model):
    """The visible effect of a test job: one row per key, however often the job runs."""

    key = models.CharField(max_length=100, unique=True)
    runs = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.key


class JobCall(models.Model):
    """Every time a test handler was entered (to count runs, unlike the effect)."""

    key = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.key
