import sys

from services.catalog.app import MIGRATIONS, create_app
from services.catalog.config import CatalogSettings
from shared.cli import service_main

sys.exit(service_main("catalog", CatalogSettings, create_app, MIGRATIONS))
