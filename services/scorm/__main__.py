import sys

from services.scorm.app import MIGRATIONS, create_app
from services.scorm.config import ScormSettings
from shared.cli import service_main

sys.exit(service_main("scorm", ScormSettings, create_app, MIGRATIONS))
