"""The integration registry: receiver key → name, config model, notifier factory."""

from collections.abc import Callable
from typing import Any

from app.notifiers import log, mattermost, pagerduty, slack, webhook
from app.notifiers.base import BuildContext, IntegrationConfig, Notifier
from app.notifiers.discord import DiscordConfig
from app.notifiers.email import EmailConfig
from app.notifiers.googlechat import GoogleChatConfig
from app.notifiers.mattermost import MattermostConfig
from app.notifiers.msteams import MSTeamsConfig
from app.notifiers.opsgenie import OpsgenieConfig
from app.notifiers.slack import SlackConfig

# Receiver key → (short integration name, config model). The order is the
# order integrations of one receiver are listed and delivered in.
CONFIG_MODELS: dict[str, tuple[str, type[IntegrationConfig]]] = {
    "pagerduty_configs": ("pagerduty", pagerduty.PagerDutyConfig),
    "opsgenie_configs": ("opsgenie", OpsgenieConfig),
    "email_configs": ("email", EmailConfig),
    "slack_configs": ("slack", SlackConfig),
    "msteams_configs": ("msteams", MSTeamsConfig),
    "googlechat_configs": ("googlechat", GoogleChatConfig),
    "discord_configs": ("discord", DiscordConfig),
    "mattermost_configs": ("mattermost", MattermostConfig),
    "webhook_configs": ("webhook", webhook.WebhookConfig),
    "log_configs": ("log", log.LogConfig),
}

Factory = Callable[[Any, BuildContext], Notifier]

FACTORIES: dict[str, Factory] = {
    "pagerduty": pagerduty.build,
    "webhook": webhook.build,
    "log": log.build,
    "slack": slack.build,
    "mattermost": mattermost.build,
}


def build_notifier(name: str, config: IntegrationConfig, ctx: BuildContext) -> Notifier:
    factory = FACTORIES.get(name)
    if factory is None:
        raise LookupError(f"no notifier for {name!r} in this version")
    return factory(config, ctx)
