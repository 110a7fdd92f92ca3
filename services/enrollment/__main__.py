import sys

from services.enrollment.app import MIGRATIONS, create_app
from services.enrollment.config import EnrollmentSettings
from shared.cli import service_main

sys.exit(service_main("enrollment", EnrollmentSettings, create_app, MIGRATIONS))
