"""`make bench` (cost): dollars per million tokens on AWS, from measured figures and AWS's prices,
next to Amazon Cognito's price for the same machine-to-machine tokens.

Per warm token with a client secret the stack makes one API Gateway HTTP API request, one Lambda
invocation (TokenFunction, arm64, its MemorySize from template.yaml), one strongly consistent
DynamoDB GetItem (the client, under 4 KB: one read request unit), one KMS Sign, and writes its
audit and metric lines to CloudWatch Logs (`make bench` counts the calls: infra/bench/bench.py).
What a process loads once a while (the resource registry every 30 s, key records every minute, a
client's usage stamp every 5 minutes) is shared by every token it serves and left out.

Measured: our CPU per token in the handler (bench.py's warm figure, AWS I/O stubbed) and the log
bytes per token (load.py, from the embedded server). Not measurable here, and so stated as
assumptions: the wait for DynamoDB and KMS inside Lambda, and how much slower a 512 MB arm64
function runs our CPU-bound code than this machine. The table shows how the total moves with them.

    python infra/bench/cost.py [--load FILE] [--handler-us N]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READ_ON = "2026-11-26"  # when the prices below were read


@dataclass(frozen=True)
class Price:
    usd: float  # per unit
    shown: str  # as the source states it
    source: str
    note: str = ""


# us-east-1, on demand, first tier, no free tier. The stored copies of aws.amazon.com's pricing pages
# that could be searched here lacked their price tables, so every figure below is from the third-party
# page named, none is confirmed on aws.amazon.com: check them there before relying on them.
API_GATEWAY_HTTP_REQUEST = Price(1.00 / 1e6, "$1.00 per million HTTP API requests (first 300 million a month)",
                                 "https://awsforengineers.com/blog/aws-api-gateway-pricing-explained")
LAMBDA_REQUEST = Price(0.20 / 1e6, "$0.20 per million invocations", "https://cloudchipr.com/blog/aws-lambda-pricing")
LAMBDA_ARM_GB_SECOND = Price(0.0000133334, "$0.0000133334 per GB-second on arm64 (first 7.5 billion a month)",
                             "https://cloudchipr.com/blog/aws-lambda-pricing")
DYNAMODB_READ_REQUEST_UNIT = Price(0.125 / 1e6, "$0.125 per million on-demand read request units (since the "
                                   "November 2024 cut)", "https://airbyte.com/data-engineering-resources/dynamodb-pricing")
# The sources disagree on asymmetric requests (Sign): the total is given at both readings.
KMS_SIGN_REQUEST = Price(0.03 / 1e4, "$0.03 per 10,000 requests, RSA and ECC keys alike",
                         "https://www.wring.co/blog/aws-kms-pricing-guide")
KMS_SIGN_REQUEST_HIGH = Price(0.15 / 1e4, "asymmetric operations at 5× the symmetric $0.03 per 10,000: $0.15",
                              "https://www.factualminds.com/blog/aws-kms-pricing-keys-requests-multi-region/")
CLOUDWATCH_LOGS_INGESTED_GB = Price(0.50, "$0.50 per GB ingested, standard class (first tier)",
                                    "https://c3x.dev/blog/cloudwatch-logs-cost-optimization")
COGNITO_M2M_TOKEN = Price(2.25 / 1e3, "$2.25 per 1,000 M2M token requests (first tier)",
                          "https://cur.vantage-api.com/aws/amazoncognito/user-pools-m2m/cupm2mtokenrequestsfull",
                          "plus $6 a month per app client: https://www.rhythmictech.com/blog/"
                          "the-aws-cognito-m2m-bill-has-come-due-what-you-need-to-know/")

# Assumptions (neither prices nor measured here).
DYNAMODB_GETITEM_MS = 5.0  # AWS describes DynamoDB as "single-digit millisecond"; the top half of that
KMS_SIGN_MS = 10.0  # no published figure: read the DependencyLatency metric of a deployed stack
LAMBDA_PLATFORM_LOG_BYTES = 300  # START, END and REPORT lines per invocation (approximate)
ONE_VCPU_MB = 1769  # Lambda: a function with 1,769 MB has the equivalent of one vCPU
GB = 1024 ** 3


@dataclass(frozen=True)
class Figures:
    handler_cpu_us: float  # measured: bench.py, warm token through lambda_handler, AWS I/O stubbed
    log_bytes: float  # measured: load.py, the embedded server's audit and metric output per token
    memory_mb: int  # template.yaml


def token_function_memory_mb() -> int:
    sys.path.insert(0, str(ROOT / "tests"))
    from support.template import load_template

    template = load_template()
    own = template["Resources"]["TokenFunction"]["Properties"].get("MemorySize")
    return int(own or template["Globals"]["Function"]["MemorySize"])


def billed_ms(figures: Figures, io_ms: float) -> int:
    """Lambda bills whole milliseconds: our CPU, slowed to the memory's share of a vCPU, plus I/O."""
    cpu_ms = figures.handler_cpu_us / 1000 * max(1.0, ONE_VCPU_MB / figures.memory_mb)
    return math.ceil(cpu_ms + io_ms)


def per_million(figures: Figures, io_ms: float, kms: Price) -> list[tuple[str, float]]:
    """(line, dollars per million tokens) for each AWS charge of a warm token."""
    gb_seconds = figures.memory_mb / 1024 * billed_ms(figures, io_ms) / 1000
    log_gb = (figures.log_bytes + LAMBDA_PLATFORM_LOG_BYTES) / GB
    return [
        ("API Gateway HTTP API request", API_GATEWAY_HTTP_REQUEST.usd * 1e6),
        ("Lambda invocation", LAMBDA_REQUEST.usd * 1e6),
        (f"Lambda duration ({figures.memory_mb} MB × {billed_ms(figures, io_ms)} ms billed)",
         gb_seconds * LAMBDA_ARM_GB_SECOND.usd * 1e6),
        ("DynamoDB GetItem (1 strongly consistent read, ≤ 4 KB)", DYNAMODB_READ_REQUEST_UNIT.usd * 1e6),
        (f"KMS Sign (at ${kms.usd * 1e4:.2f} per 10,000)", kms.usd * 1e6),
        (f"CloudWatch Logs ({figures.log_bytes + LAMBDA_PLATFORM_LOG_BYTES:.0f} bytes)",
         log_gb * CLOUDWATCH_LOGS_INGESTED_GB.usd * 1e6),
    ]


def measured_figures(load_file: Path | None, handler_us: float | None) -> Figures:
    if handler_us is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import contextlib
        import os

        import bench

        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # the handler's metrics
            handler_us, _ = bench.warm_cpu_microseconds()
    log_bytes = 0.0
    if load_file is not None:
        runs = json.loads(load_file.read_text())
        log_bytes = sorted(run["log_bytes_per_token"] for run in runs)[(len(runs) - 1) // 2]
    return Figures(handler_us, log_bytes, token_function_memory_mb())


def report(figures: Figures) -> str:
    io_ms = DYNAMODB_GETITEM_MS + KMS_SIGN_MS
    lines = [f"Measured: {figures.handler_cpu_us:.0f} µs of handler CPU per token (bench.py), "
             f"{figures.log_bytes:.0f} log bytes per token (load.py); TokenFunction {figures.memory_mb} MB arm64. "
             f"Assumed: GetItem {DYNAMODB_GETITEM_MS:g} ms + Sign {KMS_SIGN_MS:g} ms of waiting, CPU slowed "
             f"×{max(1.0, ONE_VCPU_MB / figures.memory_mb):.2f} (the memory's share of a vCPU). Prices read "
             f"{READ_ON}, us-east-1, first tier, no free tier.\n",
             "| per warm token | $ per million tokens |", "|---|---:|"]
    rows = per_million(figures, io_ms, KMS_SIGN_REQUEST)
    lines += [f"| {name} | {usd:.3f} |" for name, usd in rows]
    total = sum(usd for _, usd in rows)
    total_high = sum(usd for _, usd in per_million(figures, io_ms, KMS_SIGN_REQUEST_HIGH))
    cognito = COGNITO_M2M_TOKEN.usd * 1e6
    lines += [f"| **tokenmint** | **{total:.2f}** |",
              f"| tokenmint, with KMS Sign at ${KMS_SIGN_REQUEST_HIGH.usd * 1e4:.2f} per 10,000 | {total_high:.2f} |",
              f"| Amazon Cognito M2M, per token request | {cognito:,.0f} |", ""]
    lines += ["| Lambda wait for AWS I/O (ms) | billed ms | tokenmint $ per million tokens |", "|---:|---:|---:|"]
    for wait in (5, 15, 50, 100):
        total = sum(usd for _, usd in per_million(figures, wait, KMS_SIGN_REQUEST))
        lines.append(f"| {wait} | {billed_ms(figures, wait)} | {total:.2f} |")
    lines += ["", "Fixed costs, not per token: each KMS key $1 a month (one signs; during a rotation a next or "
              "retiring key adds one or two); Cognito: $6 a month per M2M app client.", "",
              f"Prices, read {READ_ON}, each from the third-party page named (none confirmed on aws.amazon.com):"]
    for name, price in PRICES.items():
        lines.append(f"- `{name}`: {price.shown}; {price.source}" + (f" ({price.note})" if price.note else ""))
    return "\n".join(lines)


PRICES = {name: value for name, value in globals().items() if isinstance(value, Price)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", type=Path, help="load.py --json output (log bytes per token)")
    parser.add_argument("--handler-us", type=float, help="handler CPU per token (default: measured now, bench.py)")
    args = parser.parse_args(argv)
    print(report(measured_figures(args.load, args.handler_us)))


if __name__ == "__main__":
    main()
