import sys

from services.gateway.app import MIGRATIONS, create_app
from services.gateway.config import GatewaySettings
from shared.cli import service_main

sys.exit(service_main("gateway", GatewaySettings, create_app, MIGRATIONS))
