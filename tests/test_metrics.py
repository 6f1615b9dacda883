"""``/-/metrics``: counts from several uWSGI processes and the worker summed in one scrape
of a real ``packyard serve``; every metric the shipped dashboard and alert rules use is in
it; the optional Bearer token."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from app.metrics.tally import FLUSH_SECONDS
from tests.dists import make_wheel
from tests.services import BIN, LiveProcess, LiveServer, free_port, packyard_env
from tests.test_e2e_clients import Deployment

ROOT = Path(__file__).resolve().parent.parent
PROCESS_FILE = "packyard.process_file"


def samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> labels -> value."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return found


def total(scraped: dict, name: str, **labels: str) -> float:
    return sum(
        value
        for key, value in scraped.get(name, {}).items()
        if all((k, v) in key for k, v in labels.items())
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    data = tmp_path_factory.mktemp("metrics")
    server = LiveServer(data, packyard_env(data), web_workers=3)
    try:
        yield Deployment(server, data)
    finally:
        server.stop()


def upload(deployment: Deployment, filename: str, content: bytes) -> None:
    name, version = filename.split("-")[:2]
    response = requests.post(
        deployment.upload_url, auth=("__token__", deployment.token),
        data={":action": "file_upload", "name": name, "version": version},
        files={"content": (filename, content)}, timeout=60,
    )  # fmt: skip
    assert response.status_code == 201, response.text


def scrape(deployment: Deployment) -> dict:
    response = requests.get(f"{deployment.server.url}/-/metrics", timeout=30)
    assert response.status_code == 200, response.text
    return samples(response.text)


def settled_scrape(deployment: Deployment) -> dict:
    """A scrape once every process has flushed its request counts (``TALLY``): two scrapes
    a flush apart agree on every request but the scrapes themselves."""

    def requests_counted(scraped: dict) -> dict:
        counts = scraped.get("packyard_http_requests_total", {})
        return {labels: n for labels, n in counts.items() if ("family", "metrics") not in labels}

    scraped = scrape(deployment)
    for _ in range(20):
        time.sleep(FLUSH_SECONDS + 0.2)
        again = scrape(deployment)
        if requests_counted(again) == requests_counted(scraped):
            return again
        scraped = again
    raise AssertionError("the request counts never settled")


@pytest.mark.e2e
def test_counts_add_up_across_the_web_processes_and_the_worker(served):
    before = settled_scrape(served)
    for _ in range(40):  # one connection each: uWSGI's processes take turns
        assert requests.get(f"{served.server.url}/-/health", timeout=10).status_code == 200
    wheels = [make_wheel("counted", f"1.{n}") for n in range(3)]
    for filename, content in wheels:
        upload(served, filename, content)
    listed = [served.wait_processed("counted", filename) for filename, _ in wheels]
    page_url = f"{served.server.url}{served.index_path}counted/"
    download = requests.get(
        urljoin(page_url, listed[0]["url"]), headers={"PRIVATE-TOKEN": served.token}, timeout=30
    )
    assert download.content == wheels[0][1]
    for _ in range(10):  # the first in each process fills its response cache
        served.page("counted")
    after = settled_scrape(served)

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("packyard_http_requests_total", family="ops", status="200") == 40
    assert grew("packyard_http_request_duration_seconds_count", family="ops") == 40
    assert grew("packyard_http_requests_total", family="upload", status="201") == 3
    assert grew("packyard_uploaded_files_total", kind="wheel") == 3
    assert grew("packyard_uploaded_bytes_total") == sum(len(c) for _, c in wheels)
    assert grew("packyard_served_bytes_total", kind="wheel") == len(wheels[0][1])
    assert grew("packyard_response_cache_requests_total", result="hit") >= 10 - 3
    assert grew("packyard_response_cache_requests_total") >= 10
    # Counted by the worker's process, read by a web process.
    outcome = {"task": PROCESS_FILE, "outcome": "success"}
    assert grew("packyard_task_duration_seconds_count", **outcome) == 3
    assert total(after, "packyard_task_failures_total", task=PROCESS_FILE) == 0
    beats = after["packyard_worker_heartbeat_timestamp_seconds"]
    assert beats and time.time() - max(beats.values()) < 60
    assert total(after, "packyard_package_files", state="default") == 3
    assert ("queue", "packyard") in next(iter(after["packyard_queue_depth"]))
    # The counts came from several processes' files: the web processes' and the worker's.
    pids = {p.stem.rsplit("_", 1)[1] for p in (served.tmp / "metrics").glob("counter_*.db")}
    assert len(pids) >= 3, pids


@pytest.mark.e2e
def test_a_worker_on_its_own_serves_its_metrics(tmp_path):
    """A worker with no web process beside it (another host): ``--metrics-port``, summed
    over its pool processes."""
    env = packyard_env(tmp_path)
    server = LiveServer(tmp_path, env, worker=False)
    port = free_port()
    worker = LiveProcess(
        [str(BIN / "packyard"), "worker", "--concurrency=2", "--metrics-port", str(port)],
        {**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "worker-metrics")},
        tmp_path / "worker.log",
    )
    try:
        deployment = Deployment(server, tmp_path)
        wheels = [make_wheel("alone", f"1.{n}") for n in range(4)]
        for filename, content in wheels:
            upload(deployment, filename, content)
        for filename, _ in wheels:
            deployment.wait_processed("alone", filename)
        scraped = samples(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
        web = samples(requests.get(f"{server.url}/-/metrics", timeout=30).text)
    finally:
        server.stop()
        worker.stop()
    assert total(scraped, "packyard_task_duration_seconds_count", task=PROCESS_FILE) == 4
    assert scraped["packyard_worker_heartbeat_timestamp_seconds"]
    assert total(web, "packyard_task_duration_seconds_count") == 0  # counted apart
    assert total(web, "packyard_uploaded_files_total") == 4


# A process that counts in the metrics directory (5 wheels, say), then stays or ends.
COUNTING = """
import sys, time
from prometheus_client import Counter
Counter("packyard_uploaded_files", "", ["kind"]).labels("wheel").inc(int(sys.argv[1]))
print("counted", flush=True)
if sys.argv[2] == "stay":
    time.sleep(300)
"""


def test_serve_keeps_the_files_of_processes_still_counting(tmp_path):
    """``packyard serve`` starts with a clean slate of counts, but a process still running
    on the same data directory (a separate ``packyard worker``, the serve being replaced)
    keeps its files: only the files of ended processes go."""
    (tmp_path / "metrics").mkdir()
    env = {**packyard_env(tmp_path), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    subprocess.run([str(BIN / "python"), "-c", COUNTING, "7", "end"], env=env, check=True)
    live = LiveProcess(
        [str(BIN / "python"), "-c", COUNTING, "5", "stay"], env, tmp_path / "live.log"
    )
    try:
        deadline = time.monotonic() + 30
        while "counted" not in live.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        live_files = {p.name for p in (tmp_path / "metrics").glob(f"*_{live.proc.pid}.db")}
        assert live_files and len(list((tmp_path / "metrics").glob("*.db"))) == 2
        server = LiveServer(tmp_path, packyard_env(tmp_path), worker=False)
        try:
            scraped = samples(requests.get(f"{server.url}/-/metrics", timeout=30).text)
        finally:
            server.stop()
        assert live.proc.poll() is None
    finally:
        live.stop()
    assert live_files <= {p.name for p in (tmp_path / "metrics").glob("*.db")}
    # The live process's 5 count; the ended one's 7 were a previous run's.
    assert total(scraped, "packyard_uploaded_files_total", kind="wheel") == 5


def used_metrics() -> set[str]:
    """Every packyard_* series name in the dashboard's and the alert rules' expressions."""
    dashboard = json.loads((ROOT / "deploy/grafana/packyard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    exprs += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    return {name for expr in exprs for name in re.findall(r"\bpackyard_[a-z_]+", expr)}


@pytest.mark.e2e
def test_every_metric_the_dashboard_and_alerts_use_is_scraped(served):
    used = used_metrics()
    assert len(used) >= 10
    missing = used - set(scrape(served))
    assert not missing


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 401), ({"Authorization": "Bearer s3"}, 200)],
)
def test_a_metrics_token_protects_the_endpoint(tmp_path, headers, status):
    app = create_app(
        {"DATA_DIR": str(tmp_path), "METRICS_TOKEN": "s3", "LOAD_ENTRYPOINT_PLUGINS": False}
    )
    with app.app_context():
        from app.migrations import upgrade

        upgrade()
        response = app.test_client().get("/-/metrics", headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    else:
        assert "packyard_http_requests_total" in response.text
