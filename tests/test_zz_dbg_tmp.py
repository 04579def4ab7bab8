from tests.test_jobs import *  # noqa
from django.db import connection

def test_dbg(transactional_db, tenant_a):
    job = make_job(tenant_a, key="claim-me")
    def enqueue_other():
        services.job_enqueue(tenant=tenant_a.tenant, type="test.record", payload={"key": "other"})
        with connection.cursor() as c:
            c.execute("select pg_backend_pid()"); print("thread pid", c.fetchone())
    with HoldInOtherTransaction(enqueue_other):
        with connection.cursor() as c:
            c.execute("select l.pid, l.locktype, l.mode, c.relname from pg_locks l left join pg_class c on c.oid=l.relation where l.locktype in ('tuple','transactionid','relation') and c.relname like 'tenancy%'")
            print(c.fetchall())
        from django.test.utils import CaptureQueriesContext
        with CaptureQueriesContext(connection) as q:
            print(services.run_job(job.pk))
        print(q.captured_queries[1]["sql"])
