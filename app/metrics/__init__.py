"""Prometheus metrics (``prometheus_client``): what the web processes and workers count.

Every metric with labels creates its per-process value on first use, so a process that
switches to multiprocess mode (``app.metrics.exposition.use_directory``) before it counts
anything keeps them in files that any process's ``/-/metrics`` sums. Names carry their
unit (``_seconds``, ``_bytes``, ``_total``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TASK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

HTTP_REQUESTS = Counter(
    "packyard_http_requests", "HTTP requests answered, by route family, method and status.",
    ["family", "method", "status"],
)  # fmt: skip
HTTP_LATENCY = Histogram(
    "packyard_http_request_duration_seconds",
    "Time until the response starts (headers ready), by route family.",
    ["family"], buckets=LATENCY_BUCKETS,
)  # fmt: skip
SERVED_BYTES = Counter(
    "packyard_served_bytes", "Bytes of package files served (downloads), by kind.",
    ["kind"],
)  # fmt: skip
UPLOADED_BYTES = Counter(
    "packyard_uploaded_bytes", "Bytes of package files accepted, by kind (wheel, sdist).",
    ["kind"],
)  # fmt: skip
UPLOADED_FILES = Counter(
    "packyard_uploaded_files", "Package files accepted, by kind (wheel, sdist).", ["kind"]
)
RESPONSE_CACHE = Counter(
    "packyard_response_cache_requests",
    "Index requests the response cache could answer: result hit or miss.", ["result"],
)  # fmt: skip
TASK_DURATION = Histogram(
    "packyard_task_duration_seconds", "Background task run time, by task and outcome.",
    ["task", "outcome"], buckets=TASK_BUCKETS,
)  # fmt: skip
TASK_FAILURES = Counter(
    "packyard_task_failures", "Background task runs that raised, by task.", ["task"]
)
TASK_RETRIES = Counter("packyard_task_retries", "Background task retries, by task.", ["task"])
SWEEPER_RESENT = Counter(
    "packyard_sweeper_resent_tasks",
    "Tasks the sweeper sent again: reason stalled (lost) or unsent (broker was out).",
    ["reason"],
)  # fmt: skip
WORKER_HEARTBEAT = Gauge(
    "packyard_worker_heartbeat_timestamp_seconds",
    "Unix time of each worker's last heartbeat; stale means the worker is gone or stuck.",
    ["hostname"], multiprocess_mode="max",
)  # fmt: skip


def file_kind(filename: str) -> str:
    if filename.endswith(".metadata"):  # PEP 658's core metadata of a file
        return "metadata"
    return "wheel" if filename.endswith(".whl") else "sdist"
