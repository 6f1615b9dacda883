"""One measurement against one target; each returns a plain dict for results.json."""

from __future__ import annotations

import re
import resource
import subprocess
import time
from pathlib import Path

import requests
from upload_memory import MultipartBody, RssSampler, descendants, proc_status, reset_peak

from harness.corpus import DRY_RUN_REQUIREMENTS, MIB, Dist
from harness.processes import clean_env
from harness.proxy import CountingProxy
from harness.targets import Page, Target, legacy_fields
from tests.dists import make_wheel

WRK_THREADS, WRK_CONNECTIONS = 2, 32
VISIBILITY_TIMEOUT = 30.0


# --- memory ---------------------------------------------------------------------------


def tree_pss(target: Target) -> dict[str, float]:
    """The PSS of every process the target started and their descendants, summed: pages
    that forked processes share count once (a process's PSS divides each page among the
    processes that map it)."""
    pids = [pid for process in target.processes for pid in (process.pid, *descendants(process.pid))]
    return {"pss_mib": sum(map(_pss_kib, pids)) / 1024, "processes": len(pids)}


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:  # ended meanwhile
        pass
    return 0


# --- wrk --------------------------------------------------------------------------------


def check_page(page: Page) -> int:
    """GET the page once: it must answer 200. Returns its size in bytes."""
    response = requests.get(page.url, headers=page.headers, timeout=60, allow_redirects=False)
    if response.status_code != 200:
        raise RuntimeError(f"{page.url}: {response.status_code} {response.text[:200]}")
    return len(response.content)


def wrk(page: Page, seconds: int) -> dict[str, float]:
    args = ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "--latency"]
    for key, value in page.headers.items():
        args += ["-H", f"{key}: {value}"]
    output = subprocess.run(
        [*args, page.url], capture_output=True, text=True, timeout=seconds + 60, check=True
    ).stdout
    return parse_wrk(output)


def parse_wrk(output: str) -> dict[str, float]:
    def latency_ms(percent: str) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if not match:
            return float("nan")
        return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s+(\d+) requests in", output, re.M)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if not rps or not total:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)),
        "p50_ms": latency_ms("50"),
        "p99_ms": latency_ms("99"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


# --- uploads ----------------------------------------------------------------------------


def twine_upload(target: Target, root: Path, dists: list[Dist], twine: Path) -> dict[str, float]:
    """One ``twine upload`` of ``dists``: wall time, including twine's own start-up."""
    endpoint = target.upload_endpoint()
    user, password = endpoint.auth or ("bench", "bench")
    args = [
        str(twine),
        "upload",
        "--non-interactive",
        "--disable-progress-bar",
        "--repository-url",
        endpoint.url,
        "-u",
        user,
        "-p",
        password,
        *(str(dist.full_path(root)) for dist in dists),
    ]
    started = time.perf_counter()
    result = subprocess.run(args, env=clean_env(), capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(
            f"twine upload to {target.key} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return {"files": len(dists), "seconds": seconds, "files_per_s": len(dists) / seconds}


def big_upload(target: Target, root: Path, dist: Dist) -> dict[str, float]:
    """One streamed upload of the 45 MiB wheel while sampling the web processes' RSS."""
    endpoint = target.upload_endpoint()
    path = dist.full_path(root)
    body = MultipartBody(legacy_fields(dist, path), dist.filename, path)
    pids = target.web_pids()
    time.sleep(0.3)
    idle = sum(proc_status(pid)["VmRSS"] for pid in pids)
    hwm_reset = all(reset_peak(pid) for pid in pids)
    sampler = RssSampler(pids)
    sampler.start()
    started = time.perf_counter()
    try:
        response = requests.post(
            endpoint.url,
            data=body,
            auth=endpoint.auth,
            timeout=600,
            headers={"Content-Type": body.content_type},
        )
    finally:
        body.close()
    seconds = time.perf_counter() - started
    peak = sampler.stop()
    if hwm_reset:
        peak = max(peak, sum(proc_status(pid)["VmHWM"] for pid in pids))
    if response.status_code not in (200, 201):
        raise RuntimeError(
            f"big upload to {target.key}: {response.status_code} {response.text[:300]}"
        )
    return {
        "seconds": seconds,
        "mib_per_s": dist.size / MIB / seconds,
        "idle_rss_mib": idle / MIB,
        "peak_rss_mib": peak / MIB,
        "delta_rss_mib": (peak - idle) / MIB,
        "processes": len(pids),
    }


# --- pip and uv -------------------------------------------------------------------------


def dry_run(tool: str, target: Target, bins: dict[str, Path], python: Path) -> dict[str, float]:
    """``pip|uv install --dry-run`` of the real packages, no cache, through a byte counter."""
    port, path = target.misc_simple()
    proxy = CountingProxy(port)
    args = dry_run_args(tool, f"http://127.0.0.1:{proxy.port}{path}", bins, python)
    cpu_before = _children_cpu_s()
    started = time.perf_counter()
    result = subprocess.run(args, env=clean_env(), capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    client_cpu = _children_cpu_s() - cpu_before
    proxy.close()
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"{tool} dry run against {target.key} failed:\n{output[-3000:]}")
    return {
        "seconds": seconds,
        # The client's own CPU (with its subprocesses) is most of a dry run; what is left
        # is the time it spent waiting, mostly on the server.
        "client_cpu_s": client_cpu,
        "waiting_s": max(seconds - client_cpu, 0.0),
        "bytes": proxy.down,
        "connections": proxy.connections,
        "would_install": _would_install(output),
    }


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def dry_run_args(tool: str, index_url: str, bins: dict[str, Path], python: Path) -> list[str]:
    """The command line: an empty target environment, no cache, only ``index_url``."""
    if tool == "pip":
        options = ["--python", str(python), "install", "--dry-run", "--no-cache-dir",
                   "--disable-pip-version-check"]  # fmt: skip
        return [str(bins["pip"]), *options, "--index-url", index_url, *DRY_RUN_REQUIREMENTS]
    options = ["pip", "install", "--dry-run", "--no-cache", "--no-config", "--python", str(python)]
    return [str(bins["uv"]), *options, "--index-url", index_url, *DRY_RUN_REQUIREMENTS]


def _would_install(output: str) -> int:
    """How many distributions the tool says it would install (a sanity check)."""
    uv = re.findall(r"^ \+ ", output, re.M)  # uv: one " + name==version" line each
    if uv:
        return len(uv)
    pip = re.search(r"^Would install (.*)$", output, re.M)  # pip: "name-version ..."
    return len(pip.group(1).split()) if pip else 0


# --- visibility -------------------------------------------------------------------------


def visibility(target: Target, round_index: int, uploads: int) -> dict[str, list[float]]:
    """Seconds from each upload's 2xx to the file on the group-like index (and processed)."""
    endpoint = target.upload_endpoint()
    listed: list[float] = []
    processed: list[float] = []
    wants_processed = target.key == "packyard"
    with requests.Session() as session:
        for index in range(uploads):
            name = f"fresh-r{round_index}-{index:03d}"
            filename, data = make_wheel(name, "1.0")
            dist = Dist(filename, name, "1.0", "wheel", "", len(data))
            response = session.post(
                endpoint.url,
                data=legacy_fields(dist, data),
                auth=endpoint.auth,
                timeout=60,
                files={"content": (filename, data, "application/octet-stream")},
            )
            accepted = time.perf_counter()
            if response.status_code not in (200, 201):
                raise RuntimeError(f"upload to {target.key}: {response.status_code}")
            page = target.visibility_page(name)
            seen, done = None, None
            while time.perf_counter() - accepted < VISIBILITY_TIMEOUT:
                answer = session.get(
                    page.url, headers=page.headers, allow_redirects=False, timeout=30
                )
                if answer.status_code == 200 and filename in answer.text:
                    seen = seen or time.perf_counter()
                    if not wants_processed or _has_core_metadata(answer.json()):
                        done = time.perf_counter()
                        break
                time.sleep(0.005)
            listed.append((seen or accepted + VISIBILITY_TIMEOUT) - accepted)
            if wants_processed:
                processed.append((done or accepted + VISIBILITY_TIMEOUT) - accepted)
    return {"listed_s": listed, "processed_s": processed}


def _has_core_metadata(page: dict[str, list[dict[str, object]]]) -> bool:
    return bool(page["files"] and page["files"][0].get("core-metadata"))
