"""The deployment validation category case by case (markdown), grouped by regime, with medians.

Regimes (a rule on the case's load, not on its error): "burst / overloaded" when every request arrives at once
(num_prompts <= concurrency) or an open-loop rate overloads the server; "small batch" when at most 32 sequences
run in an instance of attention TP >= 4 (host, launch and small-M kernel costs of the serving stack dominate:
issue 13's stack model); "large batch" otherwise. A second table groups the same errors by the serving stack the
case measured (its ``stack:``, priced with stacks/<stack>.yaml). Run: python benchmarks/deployment_validation.py
"""
from __future__ import annotations

import statistics

from archsim.config.hardware import resolve_hardware
from archsim.fidelity.cases import load_cases
from archsim.fidelity.validate import evaluate


def regime(case, detail) -> str:
    s = case.shape
    if int(s.get("request_rate", 0)) or (s.get("num_prompts") and s.get("concurrency")
                                         and int(s["num_prompts"]) <= int(s["concurrency"])):
        return "burst / overloaded"
    batch = detail.get("batch", 0)
    if batch and batch <= 32 and int(s.get("tp", 1)) >= 4:
        return "small batch"
    return "large batch"


def main() -> None:
    rows = []
    for case in load_cases():
        if case.kernel != "deployment":
            continue
        r = evaluate(case, resolve_hardware(case.hardware))
        rows.append((case, r, regime(case, r.detail)))
    print("| case | metric | measured | predicted | error | regime |")
    print("|---|---|---|---|---|---|")
    for case, r, reg in rows:
        pred = "skipped: " + r.skipped if r.predicted is None else f"{r.predicted:.4g}"
        err = "" if r.error is None else f"{r.error:+.0%}"
        print(f"| {case.id} | {case.metric} | {case.measured_value:.4g} | {pred} | {err} | {reg} |")
    print()
    print("| category | regime | n | median abs error |")
    print("|---|---|---|---|")
    for category in ("deployment_throughput", "deployment_tpot", "deployment_ttft"):
        for reg in ("large batch", "small batch", "burst / overloaded", "all"):
            errs = [abs(r.error) for c, r, g in rows if c.category == category and r.error is not None
                    and (reg == "all" or g == reg)]
            if errs:
                print(f"| {category} | {reg} | {len(errs)} | {statistics.median(errs):.1%} |")
    print()
    print("| category | stack | n | median abs error |")
    print("|---|---|---|---|")
    stacks = sorted({str(c.shape.get("stack", "unstated")) for c, _, _ in rows})
    for category in ("deployment_throughput", "deployment_tpot", "deployment_ttft"):
        for stack in stacks:
            errs = [abs(r.error) for c, r, _ in rows if c.category == category and r.error is not None
                    and str(c.shape.get("stack", "unstated")) == stack]
            if errs:
                print(f"| {category} | {stack} | {len(errs)} | {statistics.median(errs):.1%} |")


if __name__ == "__main__":
    main()
