"""`make bench` runs load.py and cost.py outside `make test`: make sure here they still run (tiny sizes)
and report what docs/performance.md quotes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "infra" / "bench"


def test_the_load_test_drives_the_real_server_and_the_cost_model_prices_its_figures(tmp_path):
    figures = tmp_path / "load.json"
    load = subprocess.run([sys.executable, str(BENCH / "load.py"), "--connections", "2", "4", "--seconds", "0.5",
                           "--runs", "1", "--json", str(figures)], capture_output=True, text=True, timeout=120)
    assert load.returncode == 0, load.stderr[-2000:]
    assert "| connections (keep-alive) | tokens/s" in load.stdout and "Machine:" in load.stdout
    runs = json.loads(figures.read_text())
    assert [run["connections"] for run in runs] == [2, 4]
    for run in runs:  # real tokens came back, none failed, and the latencies are ordered
        assert run["tokens"] > 0 and run["errors"] == 0
        assert 0 < run["p50_ms"] <= run["p90_ms"] <= run["p99_ms"]
        assert run["log_bytes_per_token"] > 100  # every token is audited

    cost = subprocess.run([sys.executable, str(BENCH / "cost.py"), "--load", str(figures), "--handler-us", "150"],
                          capture_output=True, text=True, timeout=120)
    assert cost.returncode == 0, cost.stderr[-2000:]
    total = float(re.search(r"\| \*\*tokenmint\*\* \| \*\*([\d.]+)\*\* \|", cost.stdout).group(1))
    cognito = float(re.search(r"\| Amazon Cognito M2M, per token request \| ([\d,.]+) \|", cost.stdout)
                    .group(1).replace(",", ""))
    lines = {name: float(usd) for name, usd in re.findall(r"^\| ([^|*]+?) \| ([\d.]+) \|$", cost.stdout, re.M)}
    assert abs(sum(usd for name, usd in lines.items() if not name.startswith(("Amazon", "tokenmint"))) - total) < 0.01
    assert 0 < total < cognito
    # every price names where it was read
    prices = re.findall(r"^- `([A-Z_0-9]+)`: .*; (https://\S+)", cost.stdout, re.M)
    assert len(prices) >= 8 and all(url.startswith("https://") for _, url in prices)
