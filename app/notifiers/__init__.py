"""The integration registry: receiver key → name, config model, notifier factory.

One module per integration holds its config model and its notifier; this
table is the only place that lists them (a test checks that every entry has
a notifier and every HTTP notifier a row in the conformance suite).
"""

from collections.abc import Callable
from typing import Any

from app.notifiers import (
    discord,
    email,
    googlechat,
    log,
    mattermost,
    msteams,
    opsgenie,
    pagerduty,
    slack,
    webhook,
)
from app.notifiers.base import BuildContext, IntegrationConfig, Notifier

Factory = Callable[[Any, BuildContext], Notifier]

# Receiver key → (short integration name, config model, factory). The order
# is the order a receiver's integrations are listed and delivered in.
_INTEGRATIONS: dict[str, tuple[str, type[IntegrationConfig], Factory]] = {
    "pagerduty_configs": ("pagerduty", pagerduty.PagerDutyConfig, pagerduty.build),
    "opsgenie_configs": ("opsgenie", opsgenie.OpsgenieConfig, opsgenie.build),
    "email_configs": ("email", email.EmailConfig, email.build),
    "slack_configs": ("slack", slack.SlackConfig, slack.build),
    "msteams_configs": ("msteams", msteams.MSTeamsConfig, msteams.build),
    "googlechat_configs": ("googlechat", googlechat.GoogleChatConfig, googlechat.build),
    "discord_configs": ("discord", discord.DiscordConfig, discord.build),
    "mattermost_configs": ("mattermost", mattermost.MattermostConfig, mattermost.build),
    "webhook_configs": ("webhook", webhook.WebhookConfig, webhook.build),
    "log_configs": ("log", log.LogConfig, log.build),
}

CONFIG_MODELS: dict[str, tuple[str, type[IntegrationConfig]]] = {
    key: (name, model) for key, (name, model, _) in _INTEGRATIONS.items()
}
FACTORIES: dict[str, Factory] = {name: factory for name, _, factory in _INTEGRATIONS.values()}


def build_notifier(name: str, config: IntegrationConfig, ctx: BuildContext) -> Notifier:
    factory = FACTORIES.get(name)
    if factory is None:
        raise LookupError(f"no notifier for {name!r}")
    return factory(config, ctx)
