#!/usr/bin/env python
"""Benchmark of datasets.profiling.profile_csv against a bare pyarrow parse.

    python bench/profile_dataset.py [--rows 1000000] [--repeat 3]

Generates a CSV of ``--rows`` rows x 20 columns of mixed types (integers, floats, categories,
booleans, dates, timestamps, free text, identifiers, some missing values) in a temporary
directory (deleted afterwards), then measures, each in a fresh subprocess:

* parse: ``pyarrow.csv.read_csv(path)`` (multi-threaded, the whole table in memory);
* profile: ``profile_csv(path, ...)`` with the encoding and delimiter found by ``validate_csv``;
* validation: ``validate_csv(path)`` (for information);
* baseline: a process that only imports the same modules.

Times are the best of ``--repeat`` runs of each (they alternate, so background load hits both
alike); the median is printed too, and the CPU time of each process (all its threads: on a shared
machine it moves less with other load than the wall time, which is what the target is on).

Peak memory is the peak resident set size of the profiling process (VmHWM, i.e. what
``ru_maxrss`` reports, but for the new process image only) minus that of the baseline process.
Peak RSS is used rather than tracemalloc because it sees everything the profile costs -- Arrow's
buffers (allocated outside Python's allocator, invisible to tracemalloc), NumPy arrays, Python
objects and allocator overhead -- while the baseline removes the interpreter and the imported
libraries (pandas is imported in both: pyarrow loads it on first use anyway).

Each measure of one run goes into one table with its target and PASS/FAIL (issue 17):
profile_time / parse_time <= 1.5 and peak memory <= 0.5 x the file's size.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TIME_RATIO_TARGET = 1.5
MEMORY_RATIO_TARGET = 0.5


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Write a mixed-type CSV of ``rows`` x 20 columns (vectorised, a few seconds per million rows)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)

    def with_missing(values, share):
        return pa.array(values, mask=rng.random(len(values)) < share)

    words = np.array(
        "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho "
        "sigma tau upsilon".split()
    )
    epoch = np.datetime64("2015-01-01")
    block = 250_000
    options = pacsv.WriteOptions(quoting_style="needed")
    with pacsv.CSVWriter(str(path), _schema(), write_options=options) as w:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            ids = np.arange(start, start + n)
            sentence = np.char.add(np.char.add(words[rng.integers(0, 20, n)], " "), words[rng.integers(0, 20, n)])
            table = pa.table({
                "id": pa.array(ids),
                "age": with_missing(rng.integers(18, 90, n), 0.10),
                "income": with_missing(np.round(rng.lognormal(10, 1, n), 2), 0.05),
                "score": pa.array(rng.normal(0, 1, n)),
                "ratio": pa.array(np.round(rng.random(n), 4)),
                "visits": pa.array(rng.poisson(3, n)),
                "category": pa.array(np.char.add("cat_", rng.integers(0, 10, n).astype(str))),
                "country": with_missing(np.char.add("Country", rng.integers(0, 50, n).astype(str)), 0.02),
                "plan": pa.array(np.array(["free", "pro", "team"])[rng.integers(0, 3, n)]),
                "is_active": pa.array(rng.random(n) < 0.7),
                "churned": pa.array(np.where(rng.random(n) < 0.2, "yes", "no")),
                "flag": pa.array(rng.integers(0, 2, n)),
                "signup_date": pa.array(epoch + rng.integers(0, 3000, n).astype("timedelta64[D]")),
                "last_login": pa.array(
                    (epoch + rng.integers(0, 3000 * 86400, n).astype("timedelta64[s]")).astype("datetime64[s]")
                ),
                "username": pa.array(np.char.add("user_", rng.integers(0, 10**8, n).astype(str))),
                "comment": with_missing(sentence, 0.30),
                "email": pa.array(np.char.add(np.char.add("u", ids.astype(str)), "@example.com")),
                "temperature": with_missing(np.round(rng.normal(20, 5, n), 1), 0.15),
                "rating": pa.array(rng.integers(1, 6, n)),
                "amount": pa.array(np.round(rng.exponential(100, n), 2)),
            }, schema=_schema())
            w.write_table(table)


def _schema():
    import pyarrow as pa

    return pa.schema([
        ("id", pa.int64()), ("age", pa.int64()), ("income", pa.float64()), ("score", pa.float64()),
        ("ratio", pa.float64()), ("visits", pa.int64()), ("category", pa.string()), ("country", pa.string()),
        ("plan", pa.string()), ("is_active", pa.bool_()), ("churned", pa.string()), ("flag", pa.int64()),
        ("signup_date", pa.date32()), ("last_login", pa.timestamp("s")), ("username", pa.string()),
        ("comment", pa.string()), ("email", pa.string()), ("temperature", pa.float64()), ("rating", pa.int64()),
        ("amount", pa.float64()),
    ])


# --- child processes --------------------------------------------------------------------------


def _imports():
    import mlops_dashboard  # noqa: F401 - first: it configures Arrow's allocator, as in the server and workers
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401
    import pyarrow.compute  # noqa: F401
    import pyarrow.csv  # noqa: F401

    import datasets.profiling  # noqa: F401
    import datasets.validation  # noqa: F401


def _maxrss_bytes() -> int:
    """Peak resident set size of this process.

    VmHWM (Linux) rather than ru_maxrss: after fork+exec, ru_maxrss starts from the parent's peak
    (here the parent generated the file), while VmHWM belongs to the new process image.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def child(mode: str, path: str, encoding: str, delimiter: str) -> dict:
    _imports()
    out: dict = {"baseline_rss": _maxrss_bytes()}
    started, cpu_started = time.perf_counter(), time.process_time()
    if mode == "parse":
        import pyarrow.csv as pacsv

        table = pacsv.read_csv(path)
        out["rows"] = table.num_rows
    elif mode == "profile":
        from datasets.profiling import profile_csv, quality

        profile = profile_csv(path, encoding=encoding, delimiter=delimiter)
        out["seconds"] = time.perf_counter() - started
        out["cpu_seconds"] = time.process_time() - cpu_started
        q = quality(profile)
        out.update(
            rows=profile.rows, restarts=profile.restarts, duplicate_rows=profile.duplicate_rows,
            types=profile.column_types, quality_score=q.quality_score, findings=q.findings,
        )
    elif mode == "validate":
        from datasets.validation import validate_csv

        result = validate_csv(path)
        out.update(rows=result.rows, ok=result.ok, encoding=result.encoding, delimiter=result.delimiter)
    out.setdefault("seconds", time.perf_counter() - started)
    out.setdefault("cpu_seconds", time.process_time() - cpu_started)
    out["peak_rss"] = _maxrss_bytes()
    return out


def run_child(mode: str, path: Path, encoding: str = "utf-8", delimiter: str = ",") -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--path", str(path),
           "--encoding", encoding, "--delimiter", delimiter]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT))
    if proc.returncode != 0:
        raise SystemExit(f"{mode} child failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of parse and profile (best is used)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=["baseline", "parse", "profile", "validate"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--encoding", default="utf-8", help=argparse.SUPPRESS)
    parser.add_argument("--delimiter", default=",", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.path, args.encoding, args.delimiter)))
        return 0

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="profile-bench-") as tmp:
        path = Path(tmp) / "bench.csv"
        generate(path, args.rows, seed=args.seed)
        size = path.stat().st_size
        print(f"generated {args.rows:,} rows x 20 columns: {mib(size)} on disk ({time.perf_counter() - t0:.1f} s)")

        validation = run_child("validate", path)
        if not validation["ok"]:
            raise SystemExit("the generated file did not validate")
        baseline = run_child("baseline", path)
        parses, profiles = [], []
        for _ in range(max(1, args.repeat)):
            parses.append(run_child("parse", path))
            profiles.append(run_child("profile", path, validation["encoding"], validation["delimiter"]))

    parse_times = [p["seconds"] for p in parses]
    profile_times = [p["seconds"] for p in profiles]
    parse_time, profile_time = min(parse_times), min(profile_times)
    base_rss = baseline["peak_rss"]
    profile_mem = max(p["peak_rss"] for p in profiles) - base_rss
    parse_mem = max(p["peak_rss"] for p in parses) - base_rss
    ratio = profile_time / parse_time
    median_ratio = statistics.median(profile_times) / statistics.median(parse_times)
    mem_ratio = profile_mem / size
    last = profiles[-1]

    print(f"profile rows={last['rows']:,} duplicates={last['duplicate_rows']:,} restarts={last['restarts']} "
          f"types={last['types']} quality={last['quality_score']}")
    time_ok, mem_ok = ratio <= TIME_RATIO_TARGET, mem_ratio <= MEMORY_RATIO_TARGET
    runs = len(parses)
    rows = [
        ("file size", mib(size), "", ""),
        ("validate_csv", f"{validation['seconds']:.2f} s", "", ""),
        (f"parse (pyarrow.csv.read_csv), best of {runs}", f"{parse_time:.2f} s",
         "runs " + ", ".join(f"{t:.2f}" for t in parse_times), ""),
        (f"profile_csv, best of {runs}", f"{profile_time:.2f} s",
         "runs " + ", ".join(f"{t:.2f}" for t in profile_times), ""),
        ("profile / parse time", f"{ratio:.2f} (median {median_ratio:.2f})", f"<= {TIME_RATIO_TARGET:g}",
         "PASS" if time_ok else "FAIL"),
        ("CPU time (all threads), best: read_csv / profile_csv",
         f"{min(p['cpu_seconds'] for p in parses):.2f} s / {min(p['cpu_seconds'] for p in profiles):.2f} s",
         f"ratio {min(p['cpu_seconds'] for p in profiles) / min(p['cpu_seconds'] for p in parses):.2f}", ""),
        ("peak RSS above baseline, read_csv", mib(parse_mem), "", ""),
        ("peak RSS above baseline, profile_csv", mib(profile_mem), "", ""),
        ("profile peak memory / file size", f"{mem_ratio:.2f}", f"<= {MEMORY_RATIO_TARGET:g}",
         "PASS" if mem_ok else "FAIL"),
    ]
    print(f"{args.rows:,} rows x 20 columns; baseline process peak RSS {mib(base_rss)}")
    print("| measure | value | target | result |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"total bench time: {time.perf_counter() - t0:.1f} s")
    return 0 if time_ok and mem_ok else 1


if __name__ == "__main__":
    sys.exit(main())
