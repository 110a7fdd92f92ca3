"""Prometheus metrics every service exports on ``/metrics`` (names are fixed: dashboards and alerts use them)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "learn_http_requests_total", "HTTP requests handled", ["service", "route", "method", "status"]
)
HTTP_DURATION = Histogram(
    "learn_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTBOX_BACKLOG = Gauge("learn_outbox_backlog", "Events waiting in the outbox", ["service"])
OUTBOX_OLDEST_AGE = Gauge("learn_outbox_oldest_age_seconds", "Age of the oldest unsent event", ["service"])
OUTBOX_PUBLISHED = Counter("learn_outbox_published_total", "Events published by the relay", ["service"])
CONSUMER_MESSAGES = Counter(
    "learn_consumer_messages_total",
    "Messages taken from a queue, by outcome (handled|duplicate|failed|dead_lettered)",
    ["service", "queue", "outcome"],
)
CONSUMERS_CONNECTED = Gauge("learn_consumers_connected", "Queues this process is consuming", ["service"])
REGENERATION_PENDING = Gauge(
    "learn_certificates_regeneration_pending", "Certificates waiting for a PDF regeneration", ["service"]
)
REGENERATED = Counter("learn_certificates_regenerated_total", "Certificate PDFs regenerated", ["service"])
# webhooks (services/webhooks/delivery.py); the backlog alert uses the age
WEBHOOK_DELIVERIES = Counter(
    "learn_webhook_deliveries_total", "Delivery attempts by endpoint and outcome (delivered|retrying|failed)",
    ["endpoint", "outcome"],
)
WEBHOOK_ATTEMPT_DURATION = Histogram(
    "learn_webhook_attempt_duration_seconds", "Time one delivery attempt took",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WEBHOOK_BACKLOG = Gauge("learn_webhook_backlog", "Messages waiting for delivery, by endpoint", ["endpoint"])
WEBHOOK_BACKLOG_AGE = Gauge(
    "learn_webhook_backlog_oldest_age_seconds", "Age of the oldest undelivered message, by endpoint", ["endpoint"]
)
