"""Load one DAG file with Airflow's DagBag in this fresh process and print what it cost, as JSON.

Run by the parse and start-up benchmarks, once per sample. Before the timed call, the
``airflow.*`` modules that the file imports are imported, as the dag-processor does in
its parent process ([dag_processor] parsing_pre_import_modules, on by default), so the
timed call measures what each parse pays: the DAG file's own imports and the DAG building.

    python bench/probe_dagbag.py FILE [--task-start] [--dump-shapes PATH]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import resource
import sys
import time
from pathlib import Path

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def _rss_mib() -> float:
    """Return the resident set size of this process now."""
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * _PAGE_BYTES / 2**20


class _CollectionTimer:
    """Total time and count of the garbage collections of each generation while it is on."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.counts = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        self.seconds[generation] += time.perf_counter() - self._started
        self.counts[generation] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dag_file", type=Path)
    parser.add_argument(
        "--task-start",
        action="store_true",
        help="load as a worker does before running one task (safe_mode and op links off)",
    )
    parser.add_argument("--dump-shapes", type=Path, help="write the loaded DAGs' shapes here")
    args = parser.parse_args()

    started = time.perf_counter()
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.file import iter_airflow_imports

    for module in iter_airflow_imports(str(args.dag_file)):
        importlib.import_module(module)
    imported = time.perf_counter()
    cpu_before = time.process_time()
    rss_before = _rss_mib()
    collections = _CollectionTimer()
    gc.callbacks.append(collections)

    if args.task_start:
        bag = DagBag(dag_folder=str(args.dag_file), safe_mode=False, load_op_links=False)
    else:
        bag = DagBag(dag_folder=str(args.dag_file))
    loaded = time.perf_counter()
    cpu_s = time.process_time() - cpu_before
    gc.callbacks.remove(collections)

    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if bag.import_errors:
        sys.exit(f"import errors: {json.dumps(bag.import_errors)[-3000:]}")
    if args.dump_shapes:
        sys.path.insert(0, str(Path(__file__).parent))
        from shapes import write_shapes

        write_shapes(bag.dags, args.dump_shapes)
    result = {
        "imports_s": imported - started,
        "dagbag_s": loaded - imported,
        "dagbag_cpu_s": cpu_s,
        "dags": len(bag.dags),
        "tasks": sum(len(dag.task_dict) for dag in bag.dags.values()),
        "edges": sum(
            len(task.downstream_task_ids) for dag in bag.dags.values() for task in dag.tasks
        ),
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak_mib,
        "gc_s": sum(collections.seconds),
        "gc_full_s": collections.seconds[2],
        "gc_full_count": collections.counts[2],
        "objects_after": len(gc.get_objects()),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
