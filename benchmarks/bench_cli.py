"""Process timings of the command line, cold and warm, each next to its target.

    .venv/bin/python benchmarks/bench_cli.py [--repeat 3] [--json FILE]

Each command runs as a fresh process (``python -m ravlm_graph ...``), the way a user
runs it, from process start to the printed answer:

* **cold**: an empty cache folder (``RAVLM_CACHE`` pointed at a new temporary folder):
  the first call builds the bundled store and computes the node embeddings it needs;
* **warm**: the same command again, with the cache the cold call left (the median of
  ``--repeat`` runs).

Besides the wall-clock seconds (which depend on what else the machine runs) the CPU
seconds of the child process are printed, and the machine's load average at the start.
In-process figures: ``import ravlm_graph``; ``KnowledgeVQA.from_pretrained`` in a fresh
process with a warm cache (its import of torch
included) and again in the same process (warm).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _args import output_file, positive_int

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "ravlm_graph" / "data" / "engine_builtin"
SCENE = ROOT / "examples" / "scene.png"

# name -> (argv after the interpreter, warm target in seconds, what the target is)
COMMANDS = {
    "ravlm answer": (["-m", "ravlm_graph", "answer", "--model", str(ENGINE), "--image", str(SCENE),
                      "--question", "What is the thing on the left used for?"], 3.0),
    "ravlm retrieve": (["-m", "ravlm_graph", "retrieve", "--question", "What can I cut bread with?",
                        "--entities", "knife,bread"], 2.0),
    "kg-ingest info": (["-m", "kg_ingest", "info", "{store}"], 1.0),
}


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_once(argv: list[str], env: dict) -> tuple[float, float, str]:
    """(wall s, CPU s, output tail) of one process."""
    c0 = _child_cpu()
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, *argv], env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    cpu = _child_cpu() - c0
    if r.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}\n{r.stderr[-2000:]}")
    return wall, cpu, (r.stdout.strip().splitlines() or [""])[0]


def in_process(env: dict, repeat: int) -> dict:
    """``import ravlm_graph`` and warm ``KnowledgeVQA.from_pretrained`` (best of ``repeat``)."""
    code = (
        "import time; t0 = time.perf_counter(); import ravlm_graph; t1 = time.perf_counter()\n"
        "from ravlm_graph import KnowledgeVQA\n"
        "t2 = time.perf_counter()\n"
        f"KnowledgeVQA.from_pretrained({str(ENGINE)!r})\n"
        "first = time.perf_counter() - t2\n"
        "best = 1e9\n"
        f"for _ in range({repeat}):\n"
        "    t = time.perf_counter()\n"
        f"    KnowledgeVQA.from_pretrained({str(ENGINE)!r})\n"
        "    best = min(best, time.perf_counter() - t)\n"
        "print(t1 - t0, first, best)\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    imp, first, load = map(float, r.stdout.split()[-3:])
    return {"import ravlm_graph": imp, "KnowledgeVQA.from_pretrained (fresh process)": first,
            "KnowledgeVQA.from_pretrained (warm)": load}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=positive_int, default=3, help="warm runs per command (median reported)")
    p.add_argument("--cache", default=None, help="cache folder to start from (default: a new empty one: cold)")
    p.add_argument("--json", type=output_file, default=None, help="write the figures here")
    args = p.parse_args(argv)
    if args.cache and Path(args.cache).exists() and not Path(args.cache).is_dir():
        p.error(f"--cache {args.cache}: not a folder")

    tmp = tempfile.TemporaryDirectory(prefix="ravlm-bench-cache-")
    cache = args.cache or tmp.name
    env = {**os.environ, "RAVLM_CACHE": cache, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    print(f"cache folder: {cache} ({'given' if args.cache else 'new, empty: the first call is cold'}); "
          f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    results: dict = {"load_average": os.getloadavg()[0], "commands": {}}
    # The store kg-ingest reads: the bundled one, as built into the cache by the first command.
    store = None
    print(f"{'command':<16} {'cold s':>7} {'(cpu)':>7} {'warm s':>7} {'(cpu)':>7}  target (warm)")
    for name, (cmd, target) in COMMANDS.items():
        if "{store}" in " ".join(cmd):
            if store is None:
                store = subprocess.run(
                    [sys.executable, "-c", "from ravlm_graph.kg import open_kg; print(open_kg('bundled:cn100k+fvqa').path)"],
                    env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
            cmd = [c.replace("{store}", store) for c in cmd]
        cold_wall, cold_cpu, first = run_once(cmd, env)
        warm = [run_once(cmd, env) for _ in range(args.repeat)]
        w_wall = statistics.median(w for w, _, _ in warm)
        w_cpu = statistics.median(c for _, c, _ in warm)
        ok = "met" if w_wall <= target else "missed"
        print(f"{name:<16} {cold_wall:>7.2f} {cold_cpu:>7.2f} {w_wall:>7.2f} {w_cpu:>7.2f}  <= {target:.1f} s: {ok}"
              f"   [{first[:60]}]", flush=True)
        results["commands"][name] = {"cold_s": cold_wall, "cold_cpu_s": cold_cpu, "warm_s": w_wall,
                                     "warm_cpu_s": w_cpu, "target_s": target, "argv": cmd}
    ip = in_process(env, args.repeat)
    for name, target in (("import ravlm_graph", 0.3), ("KnowledgeVQA.from_pretrained (fresh process)", 1.5),
                         ("KnowledgeVQA.from_pretrained (warm)", 1.5)):
        ok = "met" if ip[name] <= target else "missed"
        print(f"{name:<46} {ip[name]:>7.3f} s  <= {target} s: {ok}")
    results["in_process"] = ip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
