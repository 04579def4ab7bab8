"""mPanel settings, read from the environment (django-environ).

With no environment at all the panel runs on the embedded default: SQLite under
``MPANEL_VAR_DIR`` (``./var``), jobs run in-process right after their transaction
commits, and a local-memory cache. ``DATABASE_URL`` and ``REDIS_URL`` switch to the
production layout (PostgreSQL, a Celery worker and beat on Redis).
"""

from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF, UNSAFE_INLINE

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None

VAR_DIR = Path(env("MPANEL_VAR_DIR", default=str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=False)
# The embedded default must run with no environment at all, so it generates and keeps a key
# under var/ rather than shipping one in the repository.
_key_file = VAR_DIR / "secret_key"
if env("SECRET_KEY", default=None):
    SECRET_KEY = env("SECRET_KEY")
else:
    if not _key_file.exists():
        import secrets

        _key_file.write_text(secrets.token_urlsafe(50))
        _key_file.chmod(0o600)
    SECRET_KEY = _key_file.read_text().strip()

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
MPANEL_ENVIRONMENT = env("MPANEL_ENVIRONMENT", default="development" if DEBUG else "production")
# The locale of numbers, money and dates shown to people (Babel/CLDR names: en_US, de_DE, fr_FR, …).
MPANEL_DISPLAY_LOCALE = env("MPANEL_DISPLAY_LOCALE", default="en_US")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",  # dj-rest-auth's registration views import its models
    "dj_rest_auth",
    "dj_rest_auth.registration",
    "guardian",
    "axes",
    "django_celery_beat",
    "django_countries",
    "apps.common",
    "apps.accounts",
    "apps.tenancy",
    "apps.audit",
    "apps.jobs",
    "apps.customers",
    "apps.billing",
    "apps.catalog",
    "apps.orders",
    "apps.nodes",
    "apps.cloudpods",
    "apps.ops",
    "apps.portal",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "apps.security",
    "apps.websites",
    "apps.files",
    "apps.names",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "apps.common.middleware.RequestContextMiddleware",
    # Before CommonMiddleware, the first to read Host: a verified custom portal domain is an allowed host.
    "apps.whitelabel.middleware.PortalDomainMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "apps.common.middleware.OperatorScopeMiddleware",
    "axes.middleware.AxesMiddleware",
    "django_otp.middleware.OTPMiddleware",  # after AuthenticationMiddleware: request.user.is_verified()
]

ROOT_URLCONF = "mpanel.urls"
WSGI_APPLICATION = "mpanel.wsgi.application"
ASGI_APPLICATION = "mpanel.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.common.context_processors.environment",
                "apps.whitelabel.context.brand",  # {{ brand }} on a portal tenant's pages
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'mpanel.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The embedded default serves several processes at once (gunicorn's workers, run_jobs). SQLite
    # refuses a DEFERRED transaction that tries to upgrade its read lock to a write lock while
    # another writer holds it, at once and without waiting ("database is locked", a 503): so
    # every transaction takes the write lock when it begins (IMMEDIATE) and waits up to
    # `timeout` seconds for it; WAL lets readers go on while one writer writes.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": env.int("MPANEL_SQLITE_TIMEOUT", default=20),
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    # Persistent connections: CONN_MAX_AGE=0 halves throughput.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
SITE_ID = 1

REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # Throttles and lockouts count in the cache, so every process must share it: a per-process
    # cache would give each gunicorn worker a counter of its own. The embedded default keeps it in
    # its database (the table is made by `migrate`, apps/common/apps.py).
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "mpanel_cache"}}

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
    "guardian.backends.ObjectPermissionBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "apps.security.validators.TenantPolicyPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns about a missing folder before collectstatic has run
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
MEDIA_ROOT = VAR_DIR / "media"

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="mPanel <noreply@localhost>")

# Every request body: at most this many bytes (a 413 past it; Django's request.body enforces the
# same) and JSON nested at most this deep (a 400). See apps/common/parsers.py.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MPANEL_MAX_BODY_BYTES", default=2_621_440)
MPANEL_JSON_MAX_DEPTH = env.int("MPANEL_JSON_MAX_DEPTH", default=32)

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    # A bearer key, or the API session of a browser logged in on the browsable API (mpanel/browser.py);
    # the first one answers 401's WWW-Authenticate.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.BearerTokenAuthentication",
        "mpanel.authentication.BrowserSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "apps.common.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.common.exceptions.exception_handler",
    # Bounded in size and nesting, finite numbers only (apps/common/parsers.py).
    "DEFAULT_PARSER_CLASSES": [
        "apps.common.parsers.JSONParser",
        "apps.common.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "login": env("MPANEL_LOGIN_RATE", default="10/min"),
        "public": env("MPANEL_PUBLIC_RATE", default="120/min"),
        "password": env("MPANEL_PASSWORD_RATE", default="10/min"),  # change, reset, reset confirm
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "mPanel API",
    # The introduction (how to Authorize), one tag per module, examples and error examples are the
    # project's own (mpanel/openapi.py), added once the views have described themselves.
    "DESCRIPTION": "Multi-tenant control panel and billing platform for hosting businesses.",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "mpanel.openapi.postprocess"],
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True, "displayOperationId": False, "filter": True},
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's assets come from our own static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "apps.tenancy.roles.Role.choices",
        "PortalRoleEnum": "apps.portal.models.PortalRole.choices",
        "ContactRoleEnum": "apps.customers.models.Contact.Role",
        "InvoiceStatusEnum": "apps.billing.models.InvoiceStatus.choices",
        "SubscriptionStatusEnum": "apps.billing.models.SubscriptionStatus.choices",
        "OrderStatusEnum": "apps.orders.models.OrderStatus.choices",
        "InvitationStatusEnum": "apps.tenancy.models.INVITATION_STATUSES",
        "JobStatusEnum": "apps.jobs.models.JobStatus.choices",
        "CurrencyEnum": "apps.common.money.CURRENCY_CHOICES",
        "RecurringCycleEnum": "apps.billing.periods.RECURRING_CYCLES",
        "CycleEnum": "apps.catalog.models.Cycle.choices",
        "NodeStatusEnum": "apps.nodes.models.NodeStatus.choices",
        "NodeSettableStatusEnum": "apps.nodes.models.SETTABLE_STATUSES",
        "PodStatusEnum": "apps.cloudpods.models.PodStatus.choices",
    },
}

# --- accounts / allauth / dj-rest-auth ---------------------------------------------------------
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = env("ACCOUNT_EMAIL_VERIFICATION", default="optional")
ACCOUNT_UNIQUE_EMAIL = True
REST_AUTH = {
    "TOKEN_MODEL": "apps.accounts.models.AuthToken",
    "SESSION_LOGIN": False,
    "USER_DETAILS_SERIALIZER": "apps.accounts.serializers.UserSerializer",
    "REGISTER_SERIALIZER": "apps.accounts.serializers.RegisterSerializer",
    "PASSWORD_CHANGE_SERIALIZER": "apps.accounts.serializers.PasswordChangeSerializer",
    "PASSWORD_RESET_SERIALIZER": "apps.accounts.serializers.PasswordResetSerializer",
    "PASSWORD_RESET_CONFIRM_SERIALIZER": "apps.accounts.serializers.PasswordResetConfirmSerializer",
    "OLD_PASSWORD_FIELD_ENABLED": True,
    "LOGOUT_ON_PASSWORD_CHANGE": False,
}
# Bearer session lifetime; API tokens (security center) carry their own expiry.
MPANEL_TOKEN_TTL = timedelta(hours=env.int("MPANEL_TOKEN_TTL_HOURS", default=24 * 7))
MPANEL_FRONTEND_URL = env("MPANEL_FRONTEND_URL", default="http://127.0.0.1:8000")

# django-axes: lockout per account and per IP after repeated failures.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username"], ["ip_address"]]
AXES_USERNAME_FORM_FIELD = "email"
AXES_RESET_ON_SUCCESS = True
AXES_ENABLE_ACCESS_FAILURE_LOG = False
AXES_VERBOSE = False
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_CALLABLE = "apps.accounts.lockout.lockout_response"
AXES_CLIENT_IP_CALLABLE = "apps.common.context.client_ip_from_request"
# How many reverse proxies in front of the panel append to X-Forwarded-For: the client address (audit,
# throttles, lockouts, allowlists) is the one the outermost of them saw. 0 = the peer address itself.
MPANEL_TRUSTED_PROXY_COUNT = env.int("MPANEL_TRUSTED_PROXY_COUNT", default=0)

# django-guardian
ANONYMOUS_USER_NAME = None
GUARDIAN_MONKEY_PATCH_USER = False

# --- jobs / Celery -----------------------------------------------------------------------------
# Jobs run in-process after commit when no broker is configured (the embedded default only).
MPANEL_JOBS_EAGER = env.bool("MPANEL_JOBS_EAGER", default=not REDIS_URL)
MPANEL_JOB_MAX_ATTEMPTS = env.int("MPANEL_JOB_MAX_ATTEMPTS", default=5)
MPANEL_JOB_BACKOFF_SECONDS = env.float("MPANEL_JOB_BACKOFF_SECONDS", default=10.0)
MPANEL_JOB_HEARTBEAT_TIMEOUT = env.int("MPANEL_JOB_HEARTBEAT_TIMEOUT", default=300)
MPANEL_JOB_PENDING_REDISPATCH = env.int("MPANEL_JOB_PENDING_REDISPATCH", default=120)
# The outbox's three statements are prepared once per connection (apps/jobs/statements.py); off for a
# connection pooler that cannot keep prepared statements (PgBouncer before 1.21 in transaction mode).
MPANEL_DB_PREPARED_STATEMENTS = env.bool("MPANEL_DB_PREPARED_STATEMENTS", default=True)
MPANEL_IDEMPOTENCY_TTL = timedelta(hours=24)

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_DEFAULT_QUEUE = env("MPANEL_CELERY_QUEUE", default="celery")
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes every database connection before and after each task unless this is
# set: a new PostgreSQL connection per job. Keep them (mpanel/celery.py applies CONN_MAX_AGE and
# the health check at each task instead, as Django does at each request).
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_TASK_TIME_LIMIT = 30 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 25 * 60
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "jobs-sweep": {"task": "jobs.sweep", "schedule": 30.0},
    "idempotency-purge": {"task": "common.purge_idempotency", "schedule": 3600.0},
    # Hourly: each run bills only what is due and nothing twice, so a missed hour costs nothing.
    "billing-run": {"task": "billing.run", "schedule": 3600.0},
    # A Stripe payment whose webhook never arrived is still found and recorded.
    "billing-reconcile-stripe": {"task": "billing.reconcile_stripe", "schedule": 900.0},
    # A webhook event stored and acknowledged but never applied (its worker died) is applied here.
    "billing-webhooks-sweep": {"task": "billing.webhooks_sweep", "schedule": 60.0},
    "nodes-heartbeat": {"task": "nodes.heartbeat", "schedule": 30.0},
}

# --- billing -------------------------------------------------------------------------------------
STRIPE_API_KEY = env("STRIPE_API_KEY", default="")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", default="")
# Only for tests against a local replay of Stripe's documented responses; empty = Stripe itself.
STRIPE_API_BASE = env("STRIPE_API_BASE", default="")
MPANEL_GENERIC_WEBHOOK_SECRET = env("MPANEL_GENERIC_WEBHOOK_SECRET", default="")
# The signing secret of the platform's Connect webhook endpoint (events of tenants' connected accounts).
STRIPE_CONNECT_WEBHOOK_SECRET = env("STRIPE_CONNECT_WEBHOOK_SECRET", default="")
# Card payments of a tenant with no connected Stripe account go to the platform's own account only
# when this is on (the platform collects for the tenant); off, such a tenant takes manual payments.
MPANEL_STRIPE_PLATFORM_CHARGES = env.bool("MPANEL_STRIPE_PLATFORM_CHARGES", default=False)
MPANEL_WEBHOOK_TOLERANCE = 300
# A web process that asked for a webhook drain asks again only after this many seconds (the drain looks once
# more this long after it clears its flag, so no delivery in between waits for the sweep): one cache round trip
# per process and window instead of one per delivery (apps/billing/services/webhooks.py, ``nudge``).
MPANEL_WEBHOOK_NUDGE_SECONDS = env.float("MPANEL_WEBHOOK_NUDGE_SECONDS", default=0.2)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# --- transport security -----------------------------------------------------------------------
# Secure by default: anything that is not DEBUG nor declared a development environment is taken to
# be served over HTTPS (`manage.py check --deploy` is clean; tests/test_deploy.py). `make run`
# declares `development`, since it serves plain HTTP on loopback.
_SERVED_OVER_HTTPS = not DEBUG and MPANEL_ENVIRONMENT not in ("development", "test")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("MPANEL_SECURE_COOKIES", default=_SERVED_OVER_HTTPS)
SECURE_SSL_REDIRECT = env.bool("MPANEL_SSL_REDIRECT", default=_SERVED_OVER_HTTPS)
# Load balancers probe health over plain HTTP on the private side.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/healthz/?$", r"^\.well-known/acme-challenge/"]  # the CA asks over HTTP
SECURE_HSTS_SECONDS = env.int("MPANEL_HSTS_SECONDS", default=31_536_000 if _SERVED_OVER_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("MPANEL_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("MPANEL_HSTS_PRELOAD", default=False)
# Preloading is a promise to browsers' vendors that only the deployment can make, so its absence is
# a choice here, not an oversight (`check --deploy` would otherwise warn W021).
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
# Behind a TLS-terminating proxy: the header it sets, e.g. `X-Forwarded-Proto`. Only set it when the
# proxy always overwrites that header, or a client could claim HTTPS over plain HTTP.
if _proxy_header := env("MPANEL_PROXY_SSL_HEADER", default=""):
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https")
# Content Security Policy for the admin, the browsable API, Swagger UI and every HTML page: our own
# scripts only (no inline script anywhere: Swagger UI is served as a separate script), nothing framed.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        # The admin's and DRF's templates carry style attributes; styles cannot run code.
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- nodes and CloudPods -------------------------------------------------------------------------
# The local node's state (runc bundles, images, runc's own state); the agent uses the same layout.
MPANEL_NODE_ROOT = Path(env("MPANEL_NODE_ROOT", default=str(VAR_DIR / "node"))).resolve()
MPANEL_NODE_OFFLINE_AFTER = env.int("MPANEL_NODE_OFFLINE_AFTER", default=120)  # seconds without a heartbeat
MPANEL_AGENT_TIMEOUT = env.float("MPANEL_AGENT_TIMEOUT", default=60.0)  # a job's call to an agent
MPANEL_NODE_READ_TIMEOUT = env.float("MPANEL_NODE_READ_TIMEOUT", default=5.0)  # heartbeats, a pod's runtime in GET
# After a node secret rotation the old secret stays valid this long (seconds), while the agent gets the new one.
MPANEL_AGENT_SECRET_GRACE = env.int("MPANEL_AGENT_SECRET_GRACE", default=3600)
CLOUDPOD_PLANS = [
    {"name": "pod-xs", "vcpu": 0.5, "memory_mb": 128, "disk_gb": 1, "pids": 64, "billing_product": None},
    {"name": "pod-s", "vcpu": 1, "memory_mb": 256, "disk_gb": 2, "pids": 128, "billing_product": None},
    {"name": "pod-m", "vcpu": 2, "memory_mb": 512, "disk_gb": 5, "pids": 256, "billing_product": None},
    {"name": "pod-l", "vcpu": 4, "memory_mb": 1024, "disk_gb": 10, "pids": 512, "billing_product": None},
]
# Images a node can build: "busybox" (Debian's busybox-static); "debian-12" needs debootstrap on the node.
CLOUDPOD_IMAGES = {
    "busybox": {"description": "BusyBox (Debian busybox-static)"},
}
CLOUDPOD_DEFAULT_IMAGE = "busybox"
CLOUDPOD_TENANT_MAX_PODS = env.int("CLOUDPOD_TENANT_MAX_PODS", default=100)
CLOUDPOD_TENANT_MAX_MEMORY_MB = env.int("CLOUDPOD_TENANT_MAX_MEMORY_MB", default=64 * 1024)
CLOUDPOD_RUNTIME_CACHE_SECONDS = env.int("CLOUDPOD_RUNTIME_CACHE_SECONDS", default=5)
# --- security center (apps/security) -------------------------------------------------------------
# The operators' admin requires a verified TOTP device (`manage.py otp_enrol <email>` makes one).
MPANEL_ADMIN_REQUIRE_2FA = env.bool("MPANEL_ADMIN_REQUIRE_2FA", default=True)
MPANEL_SECURITY_EVENT_RETENTION_DAYS = env.int("MPANEL_SECURITY_EVENT_RETENTION_DAYS", default=365)
MPANEL_SHIELD_MAX_EVENTS = env.int("MPANEL_SHIELD_MAX_EVENTS", default=5000)  # Shield events per node report
# Guardian's walk of a site's files for world-writable entries (apps/security/checks.py): it stops
# after this many entries or seconds per site, so one huge site cannot hold the scan job.
MPANEL_GUARDIAN_WALK_MAX_ENTRIES = env.int("MPANEL_GUARDIAN_WALK_MAX_ENTRIES", default=50_000)
MPANEL_GUARDIAN_WALK_SECONDS = env.int("MPANEL_GUARDIAN_WALK_SECONDS", default=20)
# A site's PHP version is flagged (low) this many days before its support ends (apps/websites/php_support.py).
MPANEL_GUARDIAN_PHP_WARN_DAYS = env.int("MPANEL_GUARDIAN_PHP_WARN_DAYS", default=90)
OTP_TOTP_ISSUER = env("MPANEL_OTP_ISSUER", default="mPanel")
CELERY_BEAT_SCHEDULE["security-purge"] = {"task": "security.purge", "schedule": 3600.0}
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(
    {
        "SecurityEventTypeEnum": "apps.security.models.EventType.choices",
        "FindingStatusEnum": "apps.security.models.FindingStatus.choices",
        "FindingSeverityEnum": "apps.security.models.Severity.choices",
    }
)
# Products have a "type" choice field too: without a name of its own both get hashed names and a warning.
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]["ProductTypeEnum"] = "apps.catalog.models.ProductType.choices"

# Websites (apps/websites): hostnames may be "*.example.com" only when this is on; files of a
# deleted website are purged this long after its vhost is gone.
WEBSITES_ALLOW_WILDCARDS = env.bool("WEBSITES_ALLOW_WILDCARDS", default=False)
WEBSITE_PURGE_GRACE_SECONDS = env.int("WEBSITE_PURGE_GRACE_SECONDS", default=7 * 24 * 3600)
# File manager (apps/files): the largest upload, and how much one archive may unpack to.
FILES_MAX_UPLOAD_BYTES = env.int("FILES_MAX_UPLOAD_BYTES", default=64 * 1024 * 1024)
FILES_MAX_UNPACKED_BYTES = env.int("FILES_MAX_UNPACKED_BYTES", default=1024**3)

# --- domains, DNS and mail -----------------------------------------------------------------------
INSTALLED_APPS += ["apps.dns"]
# NS records a new zone gets (the first is the SOA's primary); the SOA's responsible mailbox.
MPANEL_DNS_NAMESERVERS = env.list("MPANEL_DNS_NAMESERVERS", default=["ns1.mpanel.invalid", "ns2.mpanel.invalid"])
MPANEL_DNS_HOSTMASTER = env("MPANEL_DNS_HOSTMASTER", default="hostmaster.mpanel.invalid")
INSTALLED_APPS += ["apps.domains"]
MPANEL_DOMAIN_REGISTRARS = {"manual": "apps.domains.registrars.ManualRegistrar"}
# Where ownership TXT records are looked up ("host" or "host:port"); empty: the system's resolvers.
MPANEL_DNS_RESOLVERS = env.list("MPANEL_DNS_RESOLVERS", default=[])
MPANEL_DNS_RESOLVER_TIMEOUT = env.float("MPANEL_DNS_RESOLVER_TIMEOUT", default=5.0)
CELERY_BEAT_SCHEDULE["domains-expire"] = {"task": "domains.expire", "schedule": 3600.0}
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(
    {
        "DnsRecordTypeEnum": "apps.dns.models.RECORD_TYPE_CHOICES",
        "ZoneStatusEnum": "apps.dns.models.ZoneStatus.choices",
        "DomainStatusEnum": "apps.domains.models.DomainStatus.choices",
        # a second "type" enum (DNS records) appeared: the product one keeps a name of its own
        "ProductTypeEnum": "apps.catalog.models.ProductType.choices",
    }
)
INSTALLED_APPS += ["apps.mail"]
# The MX host published into a zone of ours for a new mail domain; DKIM RSA key size.
MPANEL_MAIL_HOSTNAME = env("MPANEL_MAIL_HOSTNAME", default="mail.mpanel.invalid")
MPANEL_DKIM_KEY_BITS = env.int("MPANEL_DKIM_KEY_BITS", default=2048)
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]["MailDomainStatusEnum"] = "apps.mail.models.MailDomainStatus.choices"
MPANEL_MAIL_ARGON2_MEMORY_KB = env.int("MPANEL_MAIL_ARGON2_MEMORY_KB", default=65536)  # mailbox password hashes

# --- hosting databases (apps/databases) ------------------------------------------------------------
INSTALLED_APPS += ["apps.databases"]
# How often each database server is asked for its databases' sizes (the list's size_bytes).
MPANEL_DATABASE_SIZE_INTERVAL = env.float("MPANEL_DATABASE_SIZE_INTERVAL", default=300.0)
CELERY_BEAT_SCHEDULE["databases-sizes"] = {"task": "databases.sizes", "schedule": MPANEL_DATABASE_SIZE_INTERVAL}
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(
    {
        "DatabaseEngineEnum": "apps.databases.models.Engine.choices",
        "DatabaseServerStatusEnum": "apps.databases.models.ServerStatus.choices",
        "DatabaseObjectStatusEnum": "apps.databases.models.ObjectStatus.choices",
    }
)
# Domains (apps/domains): auto-renew acts this many days before expiry (hourly sweep, one job per period).
MPANEL_DOMAIN_RENEW_DAYS = env.int("MPANEL_DOMAIN_RENEW_DAYS", default=30)
CELERY_BEAT_SCHEDULE["domains-auto-renew"] = {"task": "domains.auto_renew", "schedule": 3600.0}
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]["RegistrarStateEnum"] = "apps.domains.models.RegistrarStatus.choices"

# --- SSL certificates (apps/ssl) -------------------------------------------------------------------
INSTALLED_APPS += ["apps.ssl"]
# The ACME directory of this deployment (Let's Encrypt production by default; staging or pebble in tests),
# a CA bundle for a CA's own HTTPS listener the system does not trust (pebble), External Account Binding.
MPANEL_ACME_DIRECTORY = env("MPANEL_ACME_DIRECTORY", default="https://acme-v02.api.letsencrypt.org/directory")
MPANEL_ACME_CA_BUNDLE = env("MPANEL_ACME_CA_BUNDLE", default="")
MPANEL_ACME_EAB_KID = env("MPANEL_ACME_EAB_KID", default="")
MPANEL_ACME_EAB_HMAC_KEY = env("MPANEL_ACME_EAB_HMAC_KEY", default="")
MPANEL_ACME_TIMEOUT = env.int("MPANEL_ACME_TIMEOUT", default=30)  # seconds per request to the CA
MPANEL_ACME_VALIDATION_SECONDS = env.int("MPANEL_ACME_VALIDATION_SECONDS", default=120)  # validation, issuance
MPANEL_ACME_DNS_WAIT_SECONDS = env.int("MPANEL_ACME_DNS_WAIT_SECONDS", default=60)  # a TXT record published
MPANEL_ACME_RETRY_SECONDS = env.int("MPANEL_ACME_RETRY_SECONDS", default=3600)  # first renewal retry, doubling
MPANEL_ACME_ISSUE_RETRIES = env.int("MPANEL_ACME_ISSUE_RETRIES", default=10)  # failed auto-issuances retried
MPANEL_SSL_ALERT_DAYS = env.int("MPANEL_SSL_ALERT_DAYS", default=14)  # alert when not renewed this close to expiry
# A hosting plan whose config says "ssl": true issues an ACME certificate for each new website of its accounts.
MPANEL_SSL_AUTO_ISSUE = env.bool("MPANEL_SSL_AUTO_ISSUE", default=True)
CELERY_BEAT_SCHEDULE["ssl-sweep"] = {"task": "ssl.sweep", "schedule": 3600.0}
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(
    {
        "CertificateStatusEnum": "apps.ssl.models.CertificateStatus.choices",
        "CertificateSourceEnum": "apps.ssl.models.CertificateSource.choices",
        "AcmeChallengeEnum": "apps.ssl.models.Challenge.choices",
    }
)
# --- hosting accounts (apps/hosting): plans made real, their limits, reconciliation, to-dos ----------
INSTALLED_APPS += ["apps.hosting"]
# The reconciliation check of hosting plans against what exists (apps/hosting/reconciliation.py).
MPANEL_HOSTING_RECONCILE_INTERVAL = env.float("MPANEL_HOSTING_RECONCILE_INTERVAL", default=3600.0)
CELERY_BEAT_SCHEDULE["hosting-reconcile"] = {"task": "hosting.reconcile", "schedule": MPANEL_HOSTING_RECONCILE_INTERVAL}
# How often each hosting account's websites are measured on their nodes (du; one job per account).
MPANEL_HOSTING_DISK_INTERVAL = env.float("MPANEL_HOSTING_DISK_INTERVAL", default=3600.0)
CELERY_BEAT_SCHEDULE["hosting-measure-disk"] = {
    "task": "hosting.measure_disk",
    "schedule": MPANEL_HOSTING_DISK_INTERVAL,
}
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(
    {
        "HostingAccountStatusEnum": "apps.hosting.models.AccountStatus.choices",
        "TodoStatusEnum": "apps.hosting.models.TodoStatus.choices",
        "TodoKindEnum": "apps.hosting.models.TodoKind.choices",
    }
)

# --- operators' control panel (apps/console): dashboard as the admin index, global search, groups
INSTALLED_APPS += ["apps.console"]
# --- server metrics (apps.metrics) ---------------------------------------------------------------
INSTALLED_APPS += ["apps.metrics"]
MPANEL_METRICS_INTERVAL = env.int("MPANEL_METRICS_INTERVAL", default=60)  # seconds between reports
MPANEL_METRICS_RAW_HOURS = env.int("MPANEL_METRICS_RAW_HOURS", default=48)  # raw samples kept
MPANEL_METRICS_MINUTE_DAYS = env.int("MPANEL_METRICS_MINUTE_DAYS", default=14)  # 1-minute rollups kept
MPANEL_METRICS_HOUR_DAYS = env.int("MPANEL_METRICS_HOUR_DAYS", default=400)  # 1-hour rollups kept
MPANEL_METRICS_MAX_AGE = env.int("MPANEL_METRICS_MAX_AGE", default=6 * 3600)  # oldest sample ingest takes
MPANEL_METRICS_MAX_BATCH = env.int("MPANEL_METRICS_MAX_BATCH", default=10000)  # samples per request
MPANEL_METRICS_MAX_POINTS = env.int("MPANEL_METRICS_MAX_POINTS", default=5000)  # points per query answer
MPANEL_METRICS_ROLLUP_MARGIN = env.int("MPANEL_METRICS_ROLLUP_MARGIN", default=60)  # seconds an ingest may take
CELERY_BEAT_SCHEDULE["metrics-report-local"] = {
    "task": "metrics.report_local",
    "schedule": float(MPANEL_METRICS_INTERVAL),
}
CELERY_BEAT_SCHEDULE["metrics-rollup"] = {"task": "metrics.rollup", "schedule": 60.0}
CELERY_BEAT_SCHEDULE["metrics-purge"] = {"task": "metrics.purge", "schedule": 3600.0}
# --- proof under pressure (issue 9) --------------------------------------------------------------
# django-filter with foreign-key choices bound to the request's tenant and datetimes moved to UTC
# (apps/common/filters.py, apps/tenancy/filters.py): hostile query strings are a 400, never a 500.
REST_FRAMEWORK["DEFAULT_FILTER_BACKENDS"] = [
    "apps.tenancy.filters.ScopedFilterBackend" if b == "django_filters.rest_framework.DjangoFilterBackend" else b
    for b in REST_FRAMEWORK["DEFAULT_FILTER_BACKENDS"]
]
# Every operation documented alike: summary, X-Tenant-ID, error answers (apps/common/schema.py,
# apps/tenancy/schema.py).
REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] = "apps.tenancy.schema.AutoSchema"
# The API's contract is JSON (docs/api.md): the schema documents JSON bodies only (DRF still parses
# forms for the browsable API); uploads declare multipart/form-data themselves.
SPECTACULAR_SETTINGS["PARSER_WHITELIST"] = ["apps.common.parsers.JSONParser"]

# --- white-label (apps.whitelabel): the tenant's brand, custom portal domains ----------------------
INSTALLED_APPS += ["apps.whitelabel"]
WHITELABEL_LOGO_MAX_BYTES = env.int("WHITELABEL_LOGO_MAX_BYTES", default=512 * 1024)
WHITELABEL_LOGO_MAX_PIXELS = env.int("WHITELABEL_LOGO_MAX_PIXELS", default=4096)  # per side
WHITELABEL_CACHE_SECONDS = env.int("WHITELABEL_CACHE_SECONDS", default=300)
# The address customers' e-mails are sent from; its display name is always the tenant's brand name
# (the name in DEFAULT_FROM_EMAIL is the platform's, never shown to a tenant's customers).
WHITELABEL_FROM_EMAIL = env("WHITELABEL_FROM_EMAIL", default="")
# --- backups on restic (apps/backups) -------------------------------------------------------------
INSTALLED_APPS += ["apps.backups"]
CELERY_BEAT_SCHEDULE["backups-tick"] = {"task": "backups.tick", "schedule": 60.0}
# How long the snapshot taken before a resource is deleted is kept.
MPANEL_BACKUP_FINAL_KEEP_DAYS = env.int("MPANEL_BACKUP_FINAL_KEEP_DAYS", default=30)
MPANEL_BACKUP_DOWNLOAD_MAX_BYTES = env.int("MPANEL_BACKUP_DOWNLOAD_MAX_BYTES", default=256 * 1024 * 1024)
# A repository's states are a zone's (pending, active, deleting, error): one enum, ZoneStatusEnum.
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(
    {
        "BackupSnapshotStatusEnum": "apps.backups.models.SnapshotStatus.choices",
        "BackupTaskStatusEnum": "apps.backups.models.TaskStatus.choices",
        "BackupDrillStatusEnum": "apps.backups.models.DrillStatus.choices",
        "BackupRunStatusEnum": "apps.backups.models.RunStatus.choices",
        "BackupResourceKindEnum": "apps.backups.models.ResourceKind.choices",
    }
)
