"""Run one DAG to its end with Airflow's dag.test() in this fresh process; print timings as JSON.

    python bench/probe_run.py DAG_FILE DAG_ID [--dump-shapes PATH]

``dag.test()`` is what ``airflow dags test`` and ``rollback-coordinator execute`` without an
api-server use: every task runs in this process, one after another, on the metadata
database of AIRFLOW_HOME.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dag_file", type=Path)
    parser.add_argument("dag_id")
    parser.add_argument("--dump-shapes", type=Path, help="write the DAG's shape here and stop")
    args = parser.parse_args()

    from airflow.dag_processing.dagbag import DagBag

    started = time.perf_counter()
    bag = DagBag(dag_folder=str(args.dag_file))
    if bag.import_errors:
        sys.exit(f"import errors: {json.dumps(bag.import_errors)[-3000:]}")
    dag = bag.dags[args.dag_id]
    if args.dump_shapes:
        sys.path.insert(0, str(Path(__file__).parent))
        from shapes import write_shapes

        write_shapes({args.dag_id: dag}, args.dump_shapes)
        print(json.dumps({"tasks": len(dag.task_dict)}))
        return
    loaded = time.perf_counter()
    dag_run = dag.test()
    ended = time.perf_counter()
    if str(dag_run.state) != "success":
        sys.exit(f"run {dag_run.run_id} of {args.dag_id} ended {dag_run.state}")
    result = {"load_s": loaded - started, "run_s": ended - loaded, "tasks": len(dag.task_dict)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
