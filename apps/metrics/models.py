"""Server metrics, stored for volume.

``Sample`` is the raw table: one row per node, metric and second (``ts`` in unix seconds, a
bigint: buckets are integer arithmetic that PostgreSQL and the embedded SQLite compute alike).
Its unique key (node, metric, ts) is the time index every query uses and what makes a batch sent
twice store once. ``received_at`` (indexed with BRIN on PostgreSQL: it only grows) tells the
rollup job which buckets new samples touched. ``MinuteRollup`` and ``HourRollup`` hold
avg/min/max/count per bucket, recomputed from the level below whenever a bucket is touched.

These tables are not ``TenantOwnedModel``s on purpose: a UUID key and two timestamps per sample
would double the row. A sample belongs to its node, and every read goes through the node, looked
up with the tenant-scoped manager first (another tenant's node is a 404 before any sample is read).
"""

from django.db import models

from apps.nodes.models import Node

METRIC_MAX_LENGTH = 160


class Sample(models.Model):
    id = models.BigAutoField(primary_key=True)
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="+", db_index=False)
    metric = models.CharField(max_length=METRIC_MAX_LENGTH)
    ts = models.BigIntegerField(help_text="unix seconds")
    value = models.FloatField()
    received_at = models.BigIntegerField(help_text="unix seconds when the panel stored it")

    class Meta:
        ordering = ["node", "metric", "ts"]
        constraints = [models.UniqueConstraint(fields=["node", "metric", "ts"], name="uniq_sample_node_metric_ts")]

    def __str__(self) -> str:
        return f"{self.metric}@{self.ts}={self.value}"


class Rollup(models.Model):
    id = models.BigAutoField(primary_key=True)
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="+", db_index=False)
    metric = models.CharField(max_length=METRIC_MAX_LENGTH)
    ts = models.BigIntegerField(help_text="start of the bucket, unix seconds")
    value_avg = models.FloatField()
    value_min = models.FloatField()
    value_max = models.FloatField()
    samples = models.BigIntegerField()

    class Meta:
        abstract = True
        ordering = ["node", "metric", "ts"]

    def __str__(self) -> str:
        return f"{self.metric}@{self.ts} avg={self.value_avg}"


class MinuteRollup(Rollup):
    STEP = 60

    class Meta(Rollup.Meta):
        constraints = [models.UniqueConstraint(fields=["node", "metric", "ts"], name="uniq_minute_node_metric_ts")]


class HourRollup(Rollup):
    STEP = 3600

    class Meta(Rollup.Meta):
        constraints = [models.UniqueConstraint(fields=["node", "metric", "ts"], name="uniq_hour_node_metric_ts")]


class RollupState(models.Model):
    """How far (``received_at``) the rollup job has read the raw table; one row."""

    name = models.CharField(max_length=32, primary_key=True)
    watermark = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.watermark}"


class IngestNonce(models.Model):
    """Nonces of accepted ingest requests, kept for twice the signature tolerance: a replay is refused.
    Kept in the database (not in memory) because the panel answers from several processes; written
    in the same transaction as the samples, so a refused batch consumes no nonce."""

    id = models.BigAutoField(primary_key=True)
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="+", db_index=False)
    nonce = models.CharField(max_length=128)
    seen_at = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["node", "nonce"], name="uniq_ingest_nonce")]
        indexes = [models.Index(fields=["seen_at"], name="metrics_nonce_seen_at")]

    def __str__(self) -> str:
        return self.nonce


class NodeReport(models.Model):
    """The latest report of a node: when, its services' states and its last value of every metric
    (what ``/hosting/servers`` and the server-metrics list show without reading samples)."""

    node = models.OneToOneField(Node, on_delete=models.CASCADE, primary_key=True, related_name="metrics_report")
    reported_at = models.DateTimeField()
    services = models.JSONField(default=dict, blank=True)
    latest = models.JSONField(default=dict, blank=True)
    samples_total = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"Report of {self.node} at {self.reported_at:%Y-%m-%d %H:%M}"
