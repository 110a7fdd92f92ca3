"""The webhooks service: signed HTTPS delivery of learning events to tenants' endpoints (docs/webhooks.md)."""
