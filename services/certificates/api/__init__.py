"""The certificates HTTP API: parse the request, call one handler (services/certificates/handlers.py), answer.

- ``certificates.py``: ``/api/v1/learn/certificates...`` and the same under ``/admin/v1/certificates``;
- ``templates.py``: certificate templates, their regeneration progress and the admin UI's live preview;
- ``views.py``: the JSON of a certificate and of a template;
- ``common.py``: what the routes share, and the one table mapping domain errors to the error envelope.
"""
