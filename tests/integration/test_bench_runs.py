"""`make bench` is not part of `make test`, so make sure here that it still runs (tiny sizes)."""

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "infra" / "bench" / "bench.py"


def test_the_benchmark_runs_and_reports_every_figure():
    env = {**os.environ, "BENCH_COLD_RUNS": "1", "BENCH_WARM_BATCHES": "1", "BENCH_WARM_TOKENS": "5"}
    result = subprocess.run([sys.executable, str(BENCH)], capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    for figure in ("× baseline", "token function import + init", "warm CPU per token", "client_secret_basic",
                   "kms:Sign ×1", "| private_key_jwt |", "dynamodb:PutItem ×1", "| tls_client_auth |",
                   "| self_signed_tls_client_auth |", "| client_secret_basic + DPoP proof |",
                   "key_rotation function import + init"):
        assert figure in result.stdout
