"""DeepSeek-V3's profiled DualPipe chunk pair beside the training model, op by op (docs/training_trace.md).

Reads DeepSeek's published PyTorch-profiler trace (validation/deepseek_profile_train.json.gz, deepseek-ai/profile-data
train.json: a forward and a backward chunk of 4 MoE layers each, EP64, TP1, 4K sequences, H800) with
``archsim.fidelity.profile_trace`` and prices the same pair with ``archsim.mapping.training.moe_chunk_pair`` under
the workload's published recipe. Prints the markdown tables of docs/training_trace.md (about 2 s).

Run: python benchmarks/training_trace_table.py [TRACE] [--hw h800]   (the same as
     archsim validate --trace TRACE --workload deepseek_v3 --hw h800 --format markdown)
"""
from __future__ import annotations

import argparse
from pathlib import Path

from archsim.config.hardware import load_hardware
from archsim.config.workload import load_workload
from archsim.fidelity.profile_trace import read_trace
from archsim.fidelity.trace_compare import compare_trace, markdown, published_recipe

REPO = Path(__file__).resolve().parent.parent
TRACE = REPO / "validation" / "deepseek_profile_train.json.gz"
MOE_LAYERS = 4  # profile-data README: each chunk holds 4 MoE layers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace", nargs="?", default=str(TRACE))
    ap.add_argument("--hw", default="h800")
    ap.add_argument("--workload", default="deepseek_v3")
    args = ap.parse_args()
    workload = load_workload(args.workload)
    par, setup = published_recipe(workload)
    result = compare_trace(read_trace(args.trace), workload.model, load_hardware(args.hw), par, setup,
                           moe_layers=MOE_LAYERS)
    print(markdown(result))


if __name__ == "__main__":
    main()
