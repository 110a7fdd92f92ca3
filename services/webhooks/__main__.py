import sys

from services.webhooks.app import MIGRATIONS, create_app
from services.webhooks.config import WebhooksSettings
from shared.cli import service_main

sys.exit(service_main("webhooks", WebhooksSettings, create_app, MIGRATIONS))
