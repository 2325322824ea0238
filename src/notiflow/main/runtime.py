"""The container: the long-lived objects one process shares (engine, Redis, the unread cache,
the queue, the senders, the social network adapters, the realtime hub), built up front by
:func:`create_runtime`. It satisfies every context the domains declare (``JobContext`` and its
extensions); nothing below :mod:`notiflow.main` imports it."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from notiflow.admin.alerts import Alerter, email_tenant_admins
from notiflow.config import BroadcastDriver, Settings, parse_push_rollout
from notiflow.delivery.channels import ChannelSender
from notiflow.delivery.jobs import DeliveryDispatcher
from notiflow.delivery.senders import build_senders
from notiflow.delivery.service import DeliveryWorker
from notiflow.kit.crypto import TokenCipher
from notiflow.kit.db import create_engine
from notiflow.kit.errors import InvalidInput
from notiflow.kit.outages import REDIS, redis_unavailable
from notiflow.kit.queue import JobQueue, build_broker
from notiflow.kit.throughput import build_throughput
from notiflow.kit.uow import create_sessionmaker
from notiflow.main.jobs import ALL_JOBS, AllJobsContext
from notiflow.notifications.counting import CountCreated
from notiflow.notifications.events import NotificationEvents
from notiflow.notifications.service import NotificationService
from notiflow.notifications.unread import (
    MemoryUnreadCountCache,
    RedisUnreadCountCache,
    UnreadCountCache,
)
from notiflow.realtime.apps import ApiRateLimiter, PusherApp, PusherApps, pusher_apps
from notiflow.realtime.broadcast import (
    Broadcaster,
    HubBroadcaster,
    LogBroadcaster,
    NullBroadcaster,
    PusherHttpBroadcaster,
)
from notiflow.realtime.cache import ChannelCache, MemoryCacheStore, RedisCacheStore
from notiflow.realtime.hub import Hub
from notiflow.realtime.notifier import DatabaseReplaySource, RealtimeNotifier
from notiflow.realtime.redis import Cluster, RedisBackplane, RedisPresence
from notiflow.realtime.webhooks import (
    ClusterWebhooks,
    LocalWebhooks,
    WebhookApp,
    WebhookOutbox,
    WebhookSender,
    WebhookTiming,
    webhook_apps,
)
from notiflow.social.providers import build_providers
from notiflow.social.providers.base import Provider


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    cache: UnreadCountCache
    redis: Redis | None = None
    events: NotificationEvents = field(default_factory=NotificationEvents)
    # The default app's hub (notiflow's own channels), and those of NOTIFLOW_PUSHER_APPS by id.
    hub: Hub = field(default_factory=Hub)
    app_hubs: dict[str, Hub] = field(default_factory=dict)
    broadcaster: Broadcaster = field(default_factory=NullBroadcaster)
    cluster: Cluster | None = None
    queue: JobQueue | None = None
    senders: dict[str, ChannelSender] = field(default_factory=dict)
    _worker: DeliveryWorker | None = None
    # The platform side: how tokens are kept at rest and the social network adapters by name.
    cipher: TokenCipher | None = None
    providers: dict[str, Provider] = field(default_factory=dict)

    alerter: Alerter | None = None

    # Pusher webhooks (when NOTIFLOW_WEBHOOK_URL is set): the outbox this process stores into,
    # the senders of the process that posts them, and this node's cluster-wide transitions.
    webhook_outbox: WebhookOutbox | None = None
    _webhook_senders: list[WebhookSender] | None = None
    node_webhooks: list[ClusterWebhooks] = field(default_factory=list)
    _api_rate_limiter: ApiRateLimiter | None = None

    @property
    def pusher_apps(self) -> PusherApps:
        return pusher_apps(self.settings)

    def hub_for(self, app: PusherApp) -> Hub:
        """The hub of ``app``'s channels."""
        return self.hub if app.default else self.app_hubs[app.app_id]

    def hubs(self) -> list[tuple[PusherApp, Hub]]:
        """Every app with its hub, the default app first."""
        return [(app, self.hub_for(app)) for app in self.pusher_apps]

    @property
    def api_rate_limiter(self) -> ApiRateLimiter:
        """The Pusher HTTP API's per-app rate limits (shared through Redis when configured)."""
        if self._api_rate_limiter is None:
            self._api_rate_limiter = ApiRateLimiter(self.redis)
        return self._api_rate_limiter

    def job_alerter(self) -> Alerter:
        if self.alerter is None:
            self.alerter = Alerter(
                slack_webhook_url=self.settings.alert_slack_webhook_url,
                redis=self.redis,
                email_admins=email_tenant_admins(self.settings, self.sessionmaker),
            )
        return self.alerter

    def delivery_worker(self) -> DeliveryWorker:
        if self._worker is None:
            self._worker = DeliveryWorker(
                self.sessionmaker,
                self.settings,
                self.senders,
                alerter=self.job_alerter(),
                backoff_base=self.settings.delivery_backoff_seconds,
                lease_seconds=self.settings.delivery_lease_seconds,
            )
        return self._worker

    def webhook_senders(self) -> list[WebhookSender]:
        """One sender per app with webhooks (built once; none without NOTIFLOW_WEBHOOK_URL)."""
        if self._webhook_senders is None:
            outbox = self.webhook_outbox
            timing = WebhookTiming.from_settings(self.settings)
            self._webhook_senders = [
                WebhookSender(self.sessionmaker, app, timing, alerter=self.job_alerter())
                for app in (outbox.apps.values() if outbox is not None else ())
            ]
        return self._webhook_senders

    def token_cipher(self) -> TokenCipher:
        if self.cipher is None:
            self.cipher = TokenCipher.from_settings(self.settings)
        return self.cipher

    def provider(self, name: str) -> Provider:
        try:
            return self.providers[name]
        except KeyError:
            raise InvalidInput(
                f"unknown provider {name!r}; known: {', '.join(sorted(self.providers))}",
                code="unknown_provider",
            ) from None

    def notification_service(self, session: AsyncSession) -> NotificationService:
        return NotificationService(
            session,
            cache=self.cache,
            events=self.events,
            push_rollout=parse_push_rollout(self.settings.push_rollout),
            web_push_configured=bool(
                self.settings.vapid_public_key and self.settings.vapid_private_key
            ),
        )

    async def start(self) -> None:
        """Join the Redis cluster (when configured) so events and presence span processes.

        Redis unreachable at start-up is an outage like any other, not a reason to exit: the
        process starts degraded (/health says so, the outage is logged once) and joins the
        cluster and the queue by itself once Redis answers.
        """
        if self.redis is not None and self.cluster is None:
            self.cluster = Cluster(self.redis, new_node_id())
            backplanes = [
                join_cluster(app, hub, self.redis, self.cluster) for app, hub in self.hubs()
            ]
            await self.cluster.start()
            for backplane in backplanes:
                await backplane.start()
            self.node_webhooks = [
                webhooks
                for app, hub in self.hubs()
                if (webhooks := cluster_webhooks(self.settings, app, hub, self.redis, self.cluster))
            ]
        if self.queue is not None:
            context: AllJobsContext = self  # every job's context is this runtime
            try:
                await self.queue.start(context)
            except Exception as error:
                # Only the consumer group could not be declared; a worker's listener waits
                # for Redis and declares it (JobStreamBroker), sending needs none.
                if not redis_unavailable(error):
                    raise
                REDIS.failed(error, component="startup")

    async def close(self) -> None:
        if self.queue is not None:
            await self.queue.close()
        for sender in self.senders.values():
            await sender.close()
        for provider in self.providers.values():
            await provider.close()
        if self.alerter is not None:
            await self.alerter.close()
        for webhook_sender in self._webhook_senders or ():
            await webhook_sender.close()
        if self.webhook_outbox is not None:
            try:
                await self.webhook_outbox.flush()
            except Exception:  # stopping must not fail: what is lost is said
                structlog.get_logger(__name__).exception(
                    "webhook_events_not_stored", waiting=len(self.webhook_outbox.recorded)
                )
        for webhooks in self.node_webhooks:
            await webhooks.stop()
        self.node_webhooks = []
        if self.cluster is not None:
            await close_hubs([hub for _, hub in self.hubs()], self.cluster)
            self.cluster = None
        await self.broadcaster.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()


def create_runtime(settings: Settings) -> Runtime:
    engine = create_engine(settings.database_url, echo=settings.database_echo)
    redis: Redis | None = None
    cache: UnreadCountCache
    if settings.redis_url:
        redis = Redis.from_url(settings.redis_url)
        cache = RedisUnreadCountCache(redis, settings.unread_count_cache_ttl_seconds)
    else:
        cache = MemoryUnreadCountCache(settings.unread_count_cache_ttl_seconds)
    runtime = Runtime(
        settings=settings,
        engine=engine,
        sessionmaker=create_sessionmaker(engine),
        cache=cache,
        redis=redis,
        hub=Hub(presence_limit=settings.ws_presence_limit, cache=channel_cache(settings)),
        app_hubs=app_hubs(settings),
        cipher=TokenCipher.from_settings(settings),
        providers=build_providers(settings),
    )
    runtime.events.subscribe(CountCreated())
    wire_realtime(runtime)
    wire_jobs(runtime)
    wire_webhooks(runtime)
    return runtime


def wire_webhooks(runtime: Runtime) -> None:
    """The webhook outbox of a process with a database; without Redis its own hub records into
    it directly (with Redis, :meth:`Runtime.start` joins the hub to the cluster's tracking)."""
    settings = runtime.settings
    apps = webhook_apps(settings)
    if not apps:
        return
    runtime.webhook_outbox = WebhookOutbox(
        runtime.sessionmaker, apps, retry_horizon_seconds=settings.webhook_retry_horizon_seconds
    )
    if runtime.redis is None:
        for app, hub in runtime.hubs():
            hook = _webhook_app(app, apps)
            if hook is not None:
                hub.webhooks = LocalWebhooks(hook, runtime.webhook_outbox.recorded)


def _webhook_app(app: PusherApp, apps: tuple[WebhookApp, ...]) -> WebhookApp | None:
    """``app``'s webhooks, if they are on."""
    return next((hook for hook in apps if hook.app_id == app.app_id), None)


def cluster_webhooks(
    settings: Settings, app: PusherApp, hub: Hub, redis: Redis, cluster: Cluster
) -> ClusterWebhooks | None:
    """Record the hub's webhook events cluster-wide (started), when the app wants webhooks."""
    hook = _webhook_app(app, webhook_apps(settings))
    if hook is None:
        return None
    webhooks = ClusterWebhooks(hook, redis, cluster)
    hub.webhooks = webhooks
    webhooks.start()
    return webhooks


def app_hubs(settings: Settings) -> dict[str, Hub]:
    """A hub for each app of NOTIFLOW_PUSHER_APPS (its presence limit, its own cache)."""
    return {
        app.app_id: Hub(presence_limit=app.max_presence_members, cache=channel_cache(settings))
        for app in pusher_apps(settings).others
    }


def join_cluster(app: PusherApp, hub: Hub, redis: Redis, cluster: Cluster) -> RedisBackplane:
    """Put ``app``'s hub on Redis under the app's prefix (the backplane is started by the
    caller, after the cluster)."""
    backplane = RedisBackplane(redis, cluster, app.prefix)
    backplane.attach(hub)
    hub.presence = RedisPresence(redis, cluster, app.prefix)
    if isinstance(hub.cache, ChannelCache):
        hub.cache.store = RedisCacheStore(redis, cluster.link, prefix=app.prefix)
    return backplane


async def close_hubs(hubs: list[Hub], cluster: Cluster) -> None:
    """Stop every hub's backplane, then leave the cluster."""
    for hub in hubs:
        if isinstance(hub.backplane, RedisBackplane):
            await hub.backplane.stop()
    await cluster.stop()


def wire_jobs(runtime: Runtime) -> None:
    """The job queue, and the dispatcher that wakes a worker after each send."""
    runtime.queue = JobQueue(
        build_broker(runtime.settings.redis_url),
        ALL_JOBS,
        throughput=build_throughput(runtime.redis),
    )
    if not runtime.senders:
        runtime.senders = build_senders(runtime.settings)
    runtime.events.subscribe(DeliveryDispatcher(runtime))


def wire_realtime(runtime: Runtime) -> None:
    """Choose the broadcast driver and let it hear about notifications and unread counts."""
    settings = runtime.settings
    driver = settings.broadcast_driver
    if driver is BroadcastDriver.BUILTIN:
        runtime.broadcaster = HubBroadcaster(runtime.hub)
    elif driver is BroadcastDriver.PUSHER:
        runtime.broadcaster = PusherHttpBroadcaster(
            app_id=settings.pusher_app_id,
            key=settings.pusher_app_key,
            secret=settings.pusher_app_secret,
            base_url=f"{settings.pusher_scheme}://{settings.pusher_host}:{settings.pusher_port}",
        )
    elif driver is BroadcastDriver.LOG:
        runtime.broadcaster = LogBroadcaster()
    else:
        runtime.broadcaster = NullBroadcaster()
    runtime.events.subscribe(RealtimeNotifier(runtime.broadcaster, runtime.sessionmaker))


async def build_hub(settings: Settings) -> tuple[Hub, Callable[[], Awaitable[None]]]:
    """The default app's hub of a standalone realtime node, and how to close it (with every
    other app's hub: :func:`build_hubs`)."""
    hub, _, close = await build_hubs(settings)
    return hub, close


async def build_hubs(
    settings: Settings,
) -> tuple[Hub, dict[str, Hub], Callable[[], Awaitable[None]]]:
    """The hubs of a standalone realtime node: the default app's and those of
    NOTIFLOW_PUSHER_APPS by id (joined to the Redis cluster when configured), and how to
    close them."""
    apps = pusher_apps(settings)
    hub = Hub(presence_limit=settings.ws_presence_limit, cache=channel_cache(settings))
    others = app_hubs(settings)
    if not settings.redis_url:
        if webhook_apps(settings):
            # Its events could reach no database: the outbox is the process that owns one.
            structlog.get_logger(__name__).warning(
                "webhooks_need_redis",
                message="a realtime node without NOTIFLOW_REDIS_URL records no webhook events",
            )

        async def close_local() -> None:
            return None

        return hub, others, close_local
    redis = Redis.from_url(settings.redis_url)
    cluster = Cluster(redis, new_node_id())
    hubs = [(app, hub if app.default else others[app.app_id]) for app in apps]
    backplanes = [join_cluster(app, app_hub, redis, cluster) for app, app_hub in hubs]
    await cluster.start()
    for backplane in backplanes:
        await backplane.start()
    webhooks = [
        hook
        for app, app_hub in hubs
        if (hook := cluster_webhooks(settings, app, app_hub, redis, cluster)) is not None
    ]

    async def close() -> None:
        for hook in webhooks:
            await hook.stop()
        await close_hubs([app_hub for _, app_hub in hubs], cluster)
        await redis.aclose()

    return hub, others, close


def replay_source(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> DatabaseReplaySource:
    """Where a node reads the notifications a reconnecting client missed (docs/realtime.md)."""
    return DatabaseReplaySource(
        sessionmaker,
        max_events=settings.ws_replay_max_events,
        max_age_seconds=settings.ws_replay_max_age_seconds,
    )


def channel_cache(settings: Settings, store: RedisCacheStore | None = None) -> ChannelCache:
    """Where cache channels keep their last event: Redis for a cluster, else this process."""
    return ChannelCache(store or MemoryCacheStore(), ttl=settings.ws_cache_ttl_seconds)


def new_node_id() -> str:
    return secrets.token_hex(6)
