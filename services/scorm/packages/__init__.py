"""The package import pipeline: receiving an upload (``upload``) and the background importer (``importer``)."""
