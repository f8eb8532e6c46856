"""The integration registry: config key → config model (and, later, notifier)."""

from app.notifiers.base import IntegrationConfig
from app.notifiers.discord import DiscordConfig
from app.notifiers.email import EmailConfig
from app.notifiers.googlechat import GoogleChatConfig
from app.notifiers.log import LogConfig
from app.notifiers.mattermost import MattermostConfig
from app.notifiers.msteams import MSTeamsConfig
from app.notifiers.opsgenie import OpsgenieConfig
from app.notifiers.pagerduty import PagerDutyConfig
from app.notifiers.slack import SlackConfig
from app.notifiers.webhook import WebhookConfig

# Receiver key → (short integration name, config model). The order is the
# order integrations of one receiver are listed and delivered in.
CONFIG_MODELS: dict[str, tuple[str, type[IntegrationConfig]]] = {
    "pagerduty_configs": ("pagerduty", PagerDutyConfig),
    "opsgenie_configs": ("opsgenie", OpsgenieConfig),
    "email_configs": ("email", EmailConfig),
    "slack_configs": ("slack", SlackConfig),
    "msteams_configs": ("msteams", MSTeamsConfig),
    "googlechat_configs": ("googlechat", GoogleChatConfig),
    "discord_configs": ("discord", DiscordConfig),
    "mattermost_configs": ("mattermost", MattermostConfig),
    "webhook_configs": ("webhook", WebhookConfig),
    "log_configs": ("log", LogConfig),
}
