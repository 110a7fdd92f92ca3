"""The webhooks service's Prometheus metrics (dashboards and the backlog alert use these names)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERIES = Counter("learn_webhook_deliveries_total",
                     "Delivery attempts by endpoint and outcome (delivered|retrying|failed)", ["endpoint", "outcome"])
ATTEMPT_DURATION = Histogram("learn_webhook_attempt_duration_seconds", "Time one delivery attempt took",
                             buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
BACKLOG = Gauge("learn_webhook_backlog", "Messages waiting for delivery, by endpoint", ["endpoint"])
BACKLOG_AGE = Gauge("learn_webhook_backlog_oldest_age_seconds", "Age of the oldest undelivered message, by endpoint",
                    ["endpoint"])
