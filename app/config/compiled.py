"""The compiled form of one config, swapped whole on reload.

Built once from a validated :class:`~app.config.model.Config`: the route tree with
its inherited per-route options, each receiver's integrations with their
effective delivery settings, and the runbook catalog with compiled
templates. Request handlers and loops read ``CompiledConfig`` and never the raw
config, so a reload is one atomic pointer swap.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from app.config.fields import DeliveryConfig
from app.config.model import Config, LoadedConfig, RouteConfig
from app.config.sections import FlappingConfig
from app.config.templating import url_env
from app.core.domain import integration_key
from app.core.escalation import EscalationStep
from app.core.flapping import FlapParams
from app.core.heartbeats import ALERTNAME, LABEL, Heartbeat
from app.core.heartbeats import labels as heartbeat_labels
from app.core.lifecycle import RouteOptions
from app.core.matchers import Matcher, MatchType, parse_matchers
from app.core.routing import Route, RouteResult, route
from app.core.runbooks import Runbook, RunbookCatalog, RunbookRule, resolve
from app.notifiers.base import IntegrationConfig


@dataclass(frozen=True)
class Integration:
    """One configured destination: ``receivers[i].<kind>_configs[j]``."""

    receiver: str
    name: str  # "pagerduty", "slack", ...
    index: int
    config: IntegrationConfig
    delivery: DeliveryConfig
    # Sends in flight to this destination at once: its own `concurrency` when
    # the receiver or integration sets one, else half the process's slots, so
    # a destination that hangs cannot hold every slot.
    concurrency_cap: int = 1

    @property
    def key(self) -> str:
        return integration_key(self.receiver, self.name, self.index)

    @property
    def send_resolved(self) -> bool:
        return self.config.effective_send_resolved

    @property
    def grouped(self) -> bool:
        """``grouping: group``: one message per Alertmanager group and change."""
        return self.config.effective_grouping == "group"


def flap_params(cfg: FlappingConfig) -> FlapParams:
    return FlapParams(
        half_life_s=cfg.half_life.total_seconds(),
        enter_score=cfg.enter_score,
        exit_score=cfg.exit_score,
        max_score=cfg.max_score,
        enabled=cfg.enabled,
    )


def _compile_route(
    cfg: RouteConfig,
    parent_receiver: str,
    parent_flapping: FlappingConfig,
    parent_renotify_s: float,
    path: str,
    parent_escalate: tuple[EscalationStep, ...] = (),
) -> Route[RouteOptions]:
    receiver = cfg.receiver or parent_receiver
    # Inherited like the other options; `escalate: []` turns it off below.
    escalate = (
        tuple(EscalationStep(s.after.total_seconds(), s.receiver) for s in cfg.escalate)
        if cfg.escalate is not None
        else parent_escalate
    )
    flapping = parent_flapping.merged(cfg.flapping)
    renotify_s = (
        cfg.renotify_interval.total_seconds()
        if cfg.renotify_interval is not None
        else parent_renotify_s
    )
    matchers = tuple(m for entry in cfg.matcher_strings() for m in parse_matchers(entry))
    children = tuple(
        _compile_route(child, receiver, flapping, renotify_s, f"{path}.routes[{i}]", escalate)
        for i, child in enumerate(cfg.routes)
    )
    return Route(
        receiver=receiver,
        matchers=matchers,
        continue_=cfg.continue_,
        routes=children,
        options=RouteOptions(flap_params(flapping), renotify_s, escalate),
        path=path,
    )


def _compile_runbooks(config: Config) -> RunbookCatalog:
    env = url_env()
    rules = tuple(
        RunbookRule(
            matchers=tuple(m for entry in rule.matchers for m in parse_matchers(entry)),
            template=env.from_string(rule.url),
            source=f"runbooks.rules[{i}]",
        )
        for i, rule in enumerate(config.runbooks.rules)
    )
    default = env.from_string(config.runbooks.default) if config.runbooks.default else None
    return RunbookCatalog(rules, default)


_ROUTE_CACHE_SIZE = 16384


def _matcher_names(tree: Route[RouteOptions]) -> set[str]:
    names = {m.name for m in tree.matchers}
    for child in tree.routes:
        names |= _matcher_names(child)
    return names


@dataclass(frozen=True, eq=False)
class CompiledConfig:
    loaded: LoadedConfig
    tree: Route[RouteOptions]
    receivers: Mapping[str, tuple[Integration, ...]]
    runbooks: RunbookCatalog
    integrations: Mapping[str, Integration] = field(default_factory=dict)
    heartbeats: tuple[Heartbeat, ...] = ()
    # Routing depends only on the labels the tree's matchers name (a missing
    # label matches as ""), so alerts that agree on those share one result:
    # a webhook of 10,000 new hosts routes a handful of times, not 10,000.
    # A reload builds a new CompiledConfig with an empty cache.
    _route_cache: dict[tuple[str, ...], RouteResult[RouteOptions]] = field(
        default_factory=dict, repr=False
    )
    _route_names: tuple[str, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_route_names", tuple(sorted(_matcher_names(self.tree))))

    @property
    def config(self) -> Config:
        return self.loaded.config

    @property
    def any_grouped(self) -> bool:
        """Some integration groups: ingest must then read each group's alerts."""
        return any(i.grouped for i in self.integrations.values())

    @property
    def console_url(self) -> str | None:
        """Where people reach alertrelay's console (``global.external_url``)."""
        url = self.config.external_url or self.config.global_.external_url
        return url.rstrip("/") if url else None

    def route(self, labels: Mapping[str, str]) -> RouteResult[RouteOptions]:
        key = tuple([labels.get(name, "") for name in self._route_names])
        found = self._route_cache.get(key)
        if found is None:
            if len(self._route_cache) >= _ROUTE_CACHE_SIZE:
                self._route_cache.clear()
            found = self._route_cache[key] = route(self.tree, labels)
        return found

    def runbook(self, labels: Mapping[str, str], annotations: Mapping[str, str]) -> Runbook:
        return resolve(self.runbooks, labels, annotations)


def compile_config(loaded: LoadedConfig) -> CompiledConfig:
    config = loaded.config
    root_receiver = config.route.receiver or ""
    tree = _compile_route(
        config.route,
        root_receiver,
        config.flapping,
        config.dedup.renotify_interval.total_seconds(),
        "route",
    )
    heartbeats = tuple(
        Heartbeat(
            hb.name,
            tuple(m for entry in hb.matchers for m in parse_matchers(entry)),
            hb.interval.total_seconds(),
            hb.receiver,
        )
        for hb in config.heartbeats
    )
    tree = _with_heartbeat_routes(tree, heartbeats)
    receivers: dict[str, tuple[Integration, ...]] = {}
    flat: dict[str, Integration] = {}
    for receiver in config.receivers:
        items = []
        for _key, name, index, entry in receiver.integrations():
            own = [
                o.concurrency
                for o in (receiver.delivery, entry.delivery)
                if o is not None and o.concurrency is not None
            ]
            integration = Integration(
                receiver=receiver.name,
                name=name,
                index=index,
                config=entry,
                delivery=config.delivery.merged(receiver.delivery, entry.delivery),
                concurrency_cap=own[-1] if own else max(1, config.delivery.concurrency // 2),
            )
            items.append(integration)
            flat[integration.key] = integration
        receivers[receiver.name] = tuple(items)
    return CompiledConfig(loaded, tree, receivers, _compile_runbooks(config), flat, heartbeats)


def _with_heartbeat_routes(
    tree: Route[RouteOptions], heartbeats: tuple[Heartbeat, ...]
) -> Route[RouteOptions]:
    """A heartbeat with its own ``receiver`` gets a first child route that sends
    its HeartbeatMissing alert there; the others are routed by their labels
    like any alert.

    The receiver is all it overrides: flapping, reminders and escalation steps
    are those of the route the alert's labels match without it (its labels are
    fixed, so that route is known now), as an operator who set ``escalate`` on
    the critical route expects of a critical HeartbeatMissing."""
    forced = tuple(
        Route(
            receiver=hb.receiver,
            matchers=(
                Matcher.create("alertname", MatchType.EQUAL, ALERTNAME),
                Matcher.create(LABEL, MatchType.EQUAL, hb.name),
            ),
            options=route(tree, heartbeat_labels(hb.name)).options or tree.options,
            path=f"heartbeats[{i}]",
        )
        for i, hb in enumerate(heartbeats)
        if hb.receiver is not None
    )
    if not forced:
        return tree
    return replace(tree, routes=forced + tree.routes)


class ConfigHolder:
    """The current :class:`CompiledConfig`; ``reload`` swaps it or leaves it untouched."""

    def __init__(self, runtime: CompiledConfig, path: str | None) -> None:
        self.current = runtime
        self.path = path
        self.loaded_at = 0.0

    def reload(self) -> CompiledConfig:
        """Re-read the config file. Raises ``ConfigError``; the old config stays then."""
        from app.config.model import ConfigError, load_config

        if self.path is None:
            raise ConfigError(["no config file to reload: alertrelay runs on its built-in config"])
        runtime = compile_config(load_config(self.path))
        self.current = runtime
        return runtime
