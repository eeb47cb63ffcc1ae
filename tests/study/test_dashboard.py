"""`leaksweep dashboard` serves a finished study in optuna-dashboard on 127.0.0.1; read it back over HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

# A simulated runner (no training): the whole sweep takes seconds.
SWEEP = """\
name: dash-check
data: {world: {seed: 0, n_prompts: 200}}
subsets:
  S: {metadata: {category: date}}
base: clean
search:
  teacher: teacher
  mode: patch_insert
  subsets: [S]
  seeds: 2
  runner: leaksweep.simulate:run
  simulation:
    n_prompts: 200
    samples_per_prompt: 4
    subsets:
      S: {n_units: 64, effect: 0.5, ed50: 0.05, slope: 6}
traits:
  date_confusion: {}
tracking: {wandb: null}
output_dir: OUT
"""


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "leaksweep.cli", *args], capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("dash")
    out = tmp / "sweep dir"  # a space: the printed command must quote the path
    path = tmp / "dash.yaml"
    path.write_text(SWEEP.replace("OUT", str(out)))
    proc = cli("sweep", str(path), "--no-wandb", "--no-report", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the listening TCP sockets on `port` (Linux /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":  # 0A = LISTEN
                if len(address) == 8:  # IPv4, little-endian bytes
                    found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
                else:
                    found.add(address)
    return found


def test_dashboard_serves_the_study_on_loopback_only(finished_sweep: Path, tmp_path: Path):
    results = {int(p.parent.name): json.loads(p.read_text()) for p in finished_sweep.glob("trials/*/result.json")}
    assert len(results) >= 4
    log = tmp_path / "dashboard.out"
    with open(log, "w") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "leaksweep.cli", "dashboard", str(finished_sweep), "--port", "0"],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            for line in log.read_text().splitlines():
                if line.startswith("optuna-dashboard: http://"):
                    url = line.split()[1]
            time.sleep(0.2)
        assert url is not None, log.read_text()
        text = log.read_text()
        assert "warning" not in text
        assert f"optuna-dashboard '{finished_sweep.resolve() / 'optuna.journal'}' --host 127.0.0.1 --port" in text
        assert url.startswith("http://127.0.0.1:")
        port = int(url.split(":")[2].split("/")[0])
        base = f"http://127.0.0.1:{port}"

        studies = get_json(f"{base}/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == ["dash-check"]
        study_id = studies[0]["study_id"]
        assert url.endswith(f"/dashboard/studies/{study_id}")

        detail = get_json(f"{base}/api/studies/{study_id}")
        assert detail["name"] == "dash-check"
        trials = {t["number"]: t for t in detail["trials"]}
        assert sorted(trials) == sorted(results)
        for number, result in results.items():
            assert trials[number]["state"] == "Complete"
            assert trials[number]["values"] == pytest.approx(result["objectives"])
            attrs = {a["key"]: a["value"] for a in trials[number]["user_attrs"]}
            assert attrs["trial_dir"].endswith(f"trials/{number:05d}")

        # server-side plots need plotly installed (a declared dependency)
        plot = get_json(f"{base}/api/studies/{study_id}/plot/timeline")
        assert plot["data"] and plot["data"][0]["type"] == "bar"
        with urllib.request.urlopen(f"{base}/dashboard", timeout=10) as page:
            assert b"<html" in page.read().lower()

        # bound to 127.0.0.1 itself, not the wildcard: another loopback address is refused
        if Path("/proc/net/tcp").exists():
            assert listening_addresses(port) == {"127.0.0.1"}
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.2", port), timeout=2).close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_dashboard_on_a_missing_folder_is_a_user_error(tmp_path: Path):
    proc = cli("dashboard", str(tmp_path / "nope"), timeout=60)
    assert proc.returncode == 2
    assert "not a sweep folder" in proc.stderr and str(tmp_path / "nope") in proc.stderr


def test_dashboard_on_a_busy_port_is_a_user_error(finished_sweep: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = cli("dashboard", str(finished_sweep), "--port", str(port), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"--port {port}: cannot listen there" in proc.stderr


@pytest.mark.parametrize(
    "url, shown",
    [
        (
            "postgresql+psycopg2://alice:s3cr@t:x@db.example:5432/optuna",
            "postgresql+psycopg2://alice:***@db.example:5432/optuna",
        ),
        ("sqlite:////tmp/study.db", "sqlite:////tmp/study.db"),
        ("mysql://bob@db/optuna", "mysql://bob@db/optuna"),
    ],
)
def test_printed_storage_urls_hide_the_password(url, shown):
    from leaksweep.study.dashboard import mask_password

    assert mask_password(url) == shown
