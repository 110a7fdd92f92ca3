import sys

from services.certificates.app import MIGRATIONS, create_app
from services.certificates.config import CertificatesSettings
from shared.cli import service_main

sys.exit(service_main("certificates", CertificatesSettings, create_app, MIGRATIONS))
