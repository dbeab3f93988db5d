"""Side-by-side report: shenjing against NumPy and PyTorch, as ratios.

    python bench/report.py [--rounds 3] [--reps 5] [--only NAME[,NAME...]]

Follows ../shared/BENCHMARKING.md: each library runs in its own process (no
two thread pools spin against each other; the shenjing and PyTorch processes
give NumPy's OpenBLAS, used only by the float64 checks, one thread), the processes alternate
(shenjing, numpy, torch, shenjing, ...) for ``--rounds`` rounds so drift hits
all sides, every result is checked against shenjing._reference (float64)
before its clock starts, inputs are random, and the table gives medians and
the ratios of medians. A sample is one call, or, for calls shorter than 2 ms, the mean
of a block of calls that lasts about that long (the same for every library), so small
products are timed in the steady state of a training loop rather than by one cold call.
Each library uses all the cores this process may use
(NumPy's ufuncs are single-threaded by design; its matmul uses OpenBLAS's
threads). The copy row is the bandwidth yardstick of the memory-bound rows: ops.copy,
which like every elementwise kernel writes an output of 16 MiB or more with streaming
stores, so it is a real copy (before those stores it also read every output line in).
Its 64 MB input, timed call after call, stays in this machine's 260 MB L3 between calls,
as do the inputs of the other 16M rows, while Adam's 256 MB of state does not; so the
memory-bound rows are also timed "cold" (cases.py, _cold: each call's inputs come from a ring
of copies of more than twice the L3), and the target compares cold with cold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# what the issues ask of each row: (x NumPy, x PyTorch); None where nothing is asked
TARGETS = {
    "sigmoid 16M": (5.0, None), "tanh 16M": (5.0, None), "gelu 16M": (5.0, None), "gelu_tanh 16M": (5.0, None),
    "softmax 4096x4096": (4.0, 1.0), "cross_entropy fwd+bwd 4096x1000": (3.0, 1.0),
    "adam_step 16M params": (10.0, 1.0), "sgemm 1024x1024x1024": (1.0, None), "sgemm 2048x2048x2048": (1.0, None),
    "conv2d fwd+bwd 64x1x28x28 32@5x5": (5.0, 1.0), "conv2d fwd+bwd 64x32x12x12 64@5x5": (5.0, 1.0),
    "conv2d fwd+bwd 32x64x56x56 64@3x3": (5.0, 1.0),
    "max_pool2d fwd+bwd 64x32x24x24 2x2": (3.0, None), "avg_pool2d fwd+bwd 64x32x24x24 2x2": (3.0, None),
}
SMALL_GEMM_TARGET = 1.5  # x NumPy, for every row of cases.SMALL_GEMMS (each stored plain, a or b transposed)
LARGE_GEMM_PEAK_FLOOR = 0.85  # of the FMA peak, for the 1024^3 and 2048^3 rows
MEMORY_BOUND_FLOOR = 0.70  # of the copy bandwidth, for the rows of the memory-bound kernels
MEMORY_BOUND_ROWS = ("sigmoid", "tanh", "gelu", "softmax", "cross_entropy", "adam_step")
MIN_BLOCK_SECONDS = 2e-3  # each sample times calls for at least this long (see worker)


def worker(lib: str, reps: int, only: str | None, check_results: bool) -> None:
    """Runs every case for one library and prints {case: [seconds, ...]} as JSON."""
    sys.path.insert(0, HERE)
    import numpy as np
    import cases as C

    if lib == "torch" and C._torch() is None:
        print(json.dumps({"_skipped": "PyTorch is not installed"}))
        return
    results = {}
    variants = ["shenjing", "shenjing_out", "shenjing_cold"] if lib == "shenjing" else [lib]
    for case in C.all_cases():
        if only and not any(part in case.name for part in only.split(",")):
            continue
        data = case.make(np.random.default_rng(12345))
        for variant in variants:
            if variant not in case.runners:
                continue
            fn = case.runners[variant](data)
            first = fn()
            if check_results:
                problem = C.check(case, data, first)
                if problem:
                    results.setdefault(case.name, {})[variant] = {"error": f"{variant} gives a wrong result: {problem}"}
                    continue
            start = time.perf_counter()
            fn()  # warm-up
            once = time.perf_counter() - start
            # a call shorter than a block is timed as a block of calls, the mean its sample
            # (one call of a few microseconds timed alone measured mostly its cold start)
            number = 1 if case.paired_peak else max(1, min(1000, int(MIN_BLOCK_SECONDS / max(once, 1e-9))))
            times, peak_rates = [], []
            for _ in range(reps):
                if case.paired_peak and variant == "shenjing":
                    seconds, flops = C.paired_peak_run()
                    peak_rates.append(flops / seconds)
                start = time.perf_counter()
                for _ in range(number):
                    fn()
                times.append((time.perf_counter() - start) / number)
            results.setdefault(case.name, {})[variant] = times
            if peak_rates:
                results[case.name]["_peak_share"] = [case.work / t / p for t, p in zip(times, peak_rates)]
            del fn, first
        del data
    print(json.dumps(results))


def run_worker(lib, reps, only, check_results):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, "--reps", str(reps)]
    if only:
        cmd += ["--only", only]
    if check_results:
        cmd.append("--check")
    env = dict(os.environ)
    if lib != "numpy":
        # the float64 check uses NumPy's matmul: one OpenBLAS thread, so no BLAS
        # pool is left spinning against the library being timed (BENCHMARKING.md, 4)
        env["OPENBLAS_NUM_THREADS"] = "1"
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{lib} worker failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--only", default=None, help="run the cases whose name contains this (or one of these, comma-separated)")
    parser.add_argument("--worker", choices=["shenjing", "numpy", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.reps, args.only, args.check)
        return

    sys.path.insert(0, HERE)
    import cases as C
    import shenjing

    for M, N, K in C.SMALL_GEMMS:
        for suffix in ("", " ta", " tb"):
            TARGETS[f"sgemm {M}x{N}x{K}{suffix}"] = (SMALL_GEMM_TARGET, None)
    libs = ["shenjing", "numpy", "torch"]
    times: dict = {}
    peak_shares: dict = {}  # large GEMM rows: each call's rate over the peak run just before it
    errors = []
    skipped = set()
    for r in range(args.rounds):
        for lib in libs:
            if lib in skipped:
                continue
            res = run_worker(lib, args.reps, args.only, check_results=(r == 0))
            if "_skipped" in res:
                skipped.add(lib)
                continue
            for name, by_variant in res.items():
                for variant, value in by_variant.items():
                    if variant == "_peak_share":
                        peak_shares.setdefault(name, []).extend(value)
                        continue
                    if isinstance(value, dict):
                        errors.append(f"{name}: {value['error']}")
                        continue
                    times.setdefault(name, {}).setdefault(variant, []).extend(value)

    info = shenjing.backend_info()
    print(f"shenjing {info['version']} | isa {info['isa']} | threads {info['threads']} | "
          f"{platform.processor() or platform.machine()} | {os.cpu_count()} CPUs | "
          f"{args.rounds} rounds x {args.reps} reps, medians, one process per library")
    if "torch" in skipped:
        print("PyTorch is not installed: its columns are empty")
    work = {c.name: (c.work, c.unit) for c in C.all_cases()}
    copy_rate = copy_cold_rate = peak_rate = None
    if "copy 16M" in times and "shenjing_out" in times["copy 16M"]:
        copy_rate = work["copy 16M"][0] / statistics.median(times["copy 16M"]["shenjing_out"]) / 1e9
    if "copy 16M" in times and "shenjing_cold" in times["copy 16M"]:
        copy_cold_rate = work["copy 16M"][0] / statistics.median(times["copy 16M"]["shenjing_cold"]) / 1e9
    if "fma peak" in times:
        peak_rate = work["fma peak"][0] / min(times["fma peak"]["shenjing"]) / 1e9  # a peak: the best run

    print("shenjing: the API call (allocates its output, as NumPy and PyTorch do); out=: into a preallocated")
    print("output (the kernel alone), whose rate is compared with the copy's; sgemm rows: % of the FMA peak")
    print("(the best peak run; the 1024^3 and 2048^3 rows: the median over calls of each call's rate")
    print("over a peak run just before it, since the machine's speed drifts between rows); conv2d rows:")
    print("the direct sum's flops over the time (Winograd does fewer, so this can pass the FMA peak);")
    print("cold: out= on inputs that come from memory, not the L3 (see the top of this file), its rate")
    print("and its share of the cold copy's, which the >=70% target reads")
    header = (f"{'case':32} {'shenjing':>9} {'out=':>9} {'numpy':>9} {'torch':>9} {'x numpy':>8} {'x torch':>8}"
              f" {'kernel rate':>15} {'%copy':>6} {'cold':>9} {'rate':>6} {'%copy':>6}  target")
    print(header)
    print("-" * len(header))
    fmt = lambda s: f"{s * 1e3:7.2f}ms" if s is not None else f"{'-':>9}"
    for name, by_lib in times.items():
        med = {lib: statistics.median(v) for lib, v in by_lib.items()}
        amount, unit = work[name]
        ours, ours_out = med.get("shenjing"), med.get("shenjing_out")
        kernel = ours_out or ours
        rate = amount / kernel / 1e9 if kernel else float("nan")
        vs_np = med["numpy"] / ours if ours and "numpy" in med else None
        vs_t = med["torch"] / ours if ours and "torch" in med else None
        frac = rate / copy_rate if copy_rate and unit == "GB/s" and name != "copy 16M" else None
        if peak_rate and name.startswith("sgemm"):
            frac = rate / peak_rate
        cold = med.get("shenjing_cold")
        cold_rate = amount / cold / 1e9 if cold else None
        cold_frac = cold_rate / copy_cold_rate if cold_rate and copy_cold_rate and name != "copy 16M" else None
        target = TARGETS.get(name)
        notes = []
        if target:
            if target[0] and vs_np is not None:
                notes.append(f">={target[0]}x np {'ok' if vs_np >= target[0] else 'MISS'}")
            if target[1] and vs_t is not None:
                notes.append(f">={target[1]}x torch {'ok' if vs_t >= target[1] else 'MISS'}")
        if cold_frac is not None and name.startswith(MEMORY_BOUND_ROWS):
            notes.append(f">=70% copy cold {'ok' if cold_frac >= MEMORY_BOUND_FLOOR else 'MISS'}")
        if name in peak_shares:  # the share of the peak measured moments before each call
            frac = statistics.median(peak_shares[name])
            notes.append(f">=85% peak {'ok' if frac >= LARGE_GEMM_PEAK_FLOOR else 'MISS'}")
        print(f"{name:32} {fmt(ours)} {fmt(ours_out)} {fmt(med.get('numpy'))} {fmt(med.get('torch'))} "
              f"{(f'{vs_np:7.2f}x' if vs_np else '       -')} {(f'{vs_t:7.2f}x' if vs_t else '       -')} "
              f"{rate:7.1f} {unit:>7} {(f'{frac * 100:5.0f}%' if frac else '     -')} {fmt(cold)} "
              f"{(f'{cold_rate:6.1f}' if cold_rate else '     -')} {(f'{cold_frac * 100:5.0f}%' if cold_frac else '     -')}"
              f"  {', '.join(notes)}")
    for e in errors:
        print("WRONG RESULT:", e)
    if errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
