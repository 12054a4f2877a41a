"""Benchmarks 1 and 2: parsing the factory's DAG file, and building one DAG at task start-up.

Every sample is a fresh process that loads one DAG file with DagBag (see probe_dagbag.py).
The floor rebuilds the factory's DAG shapes with EmptyOperator in plain Python, and
dag-factory builds them from YAML; both shapes come from the factory's own DAGs.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from common import (
    BENCH_DIR,
    CHECKOUT,
    ProbeTimeout,
    Row,
    Samples,
    airflow_env,
    describe,
    log,
    ratio_row,
    run_probe,
    scratch_dir,
)
from deployment import build_deployment
from shapes import write_dag_factory_config

FACTORY_FILE = CHECKOUT / "dags" / "rollback_batches.py"
PROBE = str(BENCH_DIR / "probe_dagbag.py")
# A task in the middle of the rollback order, as a worker would parse for it.
START_UP_TASK = "orders.rollback"


@dataclass(frozen=True)
class ParseSettings:
    batches: int = 500
    fallback_batches: int = 10
    samples: int = 3
    timeout_s: float = 150
    scaling: tuple[int, ...] = (5, 20)


def parse_benchmark(settings: ParseSettings) -> list[Row]:
    """Compare the factory's parse with the floor and dag-factory on the same DAG shapes."""
    with scratch_dir("parse") as root:
        rows: list[Row] = []
        batches = settings.batches
        env, shapes = _prepare(root / str(batches), batches)
        try:
            log(f"parse: factory warm-up with {batches} batches (limit {settings.timeout_s:.0f} s)")
            first = run_probe([PROBE, str(FACTORY_FILE), "--dump-shapes", str(shapes)], env,
                              settings.timeout_s)
        except ProbeTimeout as error:
            rows.append(_timed_out_row(batches, error))
            batches = settings.fallback_batches
            env, shapes = _prepare(root / str(batches), batches)
            log(f"parse: falling back to {batches} batches")
            first = run_probe([PROBE, str(FACTORY_FILE), "--dump-shapes", str(shapes)], env,
                              settings.timeout_s)
        rows += _compare(root, env, shapes, batches, first, settings)
        rows += _scaling(root, settings)
        return rows


def _prepare(root: Path, batches: int) -> tuple[dict[str, str], Path]:
    deployment = build_deployment(root, batches)
    (root / "airflow").mkdir()
    env = airflow_env(root / "airflow", FACTORY_FILE.parent, **deployment.env())
    return env, root / "shapes.json"


def _timed_out_row(batches: int, error: ProbeTimeout) -> Row:
    return Row(
        figure=f"factory parse, {batches} batches x 30 services",
        ours=f"not measured: {error}",
        reference="",
        ratio=None,
        target="<= 1.25 x floor",
        verdict="NO",
        command=f"bench/run.py --only parse --batches {batches}",
    )


def _compare(
    root: Path,
    env: dict[str, str],
    shapes: Path,
    batches: int,
    first: dict,
    settings: ParseSettings,
) -> list[Row]:
    floor_dir = root / "floor"
    dag_factory_dir = root / "dag_factory"
    floor_dir.mkdir()
    dag_factory_dir.mkdir()
    shutil.copy(BENCH_DIR / "dag_files" / "floor_dags.py", floor_dir)
    shutil.copy(shapes, floor_dir / "shapes.json")
    shutil.copy(BENCH_DIR / "dag_files" / "dag_factory_dags.py", dag_factory_dir)
    write_dag_factory_config(shapes, dag_factory_dir / "dags.yaml")
    files = {
        "factory": FACTORY_FILE,
        "floor": floor_dir / "floor_dags.py",
        "dag-factory": dag_factory_dir / "dag_factory_dags.py",
    }
    parse = {name: Samples() for name in files}
    cpu = {name: Samples() for name in files}
    process = {name: Samples() for name in files}
    memory = {name: Samples(unit="MiB") for name in files}
    collecting = {name: Samples() for name in files}
    full_collections = {name: Samples(unit="full collections") for name in files}
    objects = {name: Samples(unit="objects") for name in files}
    for round_number in range(1, settings.samples + 1):
        # Interleaved rounds, so a slow spell of the machine hits every contender alike.
        for name, path in files.items():
            log(f"parse: round {round_number}/{settings.samples}: {name}")
            result = run_probe([PROBE, str(path)], env, settings.timeout_s * 4)
            parse[name].add(result["dagbag_s"])
            cpu[name].add(result["dagbag_cpu_s"])
            process[name].add(result["process_s"])
            memory[name].add(result["peak_rss_mib"])
            collecting[name].add(result["gc_s"])
            full_collections[name].add(result["gc_full_count"])
            objects[name].add(result["objects_after"])

    workload = f"{batches} batches x 30 services: {first['dags']} DAGs, {first['tasks']} tasks, " \
           f"{first['edges']} edges"
    command = f"bench/run.py --only parse --batches {batches}"
    return [
        ratio_row(f"factory parse (DagBag call), {workload}", parse["factory"], parse["floor"],
                  "floor", 1.25, "<= 1.25 x floor", command),
        ratio_row("factory parse (DagBag call), same DAGs", parse["factory"],
                  parse["dag-factory"], "dag-factory", 1.0, "< 1 x dag-factory", command),
        ratio_row("factory parse (DagBag call), CPU time", cpu["factory"], cpu["floor"],
                  "floor", None, "", command),
        ratio_row("factory parse, whole process", process["factory"], process["floor"],
                  "floor", None, "", command),
        ratio_row("garbage collection within the DagBag call", collecting["factory"],
                  collecting["floor"], "floor", None, "", command),
        ratio_row("full (generation 2) collections within the DagBag call",
                  full_collections["factory"], full_collections["floor"], "floor", None, "",
                  command),
        ratio_row("objects the collector tracks after the parse", objects["factory"],
                  objects["floor"], "floor", None, "", command),
        ratio_row("peak memory of the parse process (ru_maxrss)", memory["factory"],
                  memory["floor"], "floor", None, "", command),
        ratio_row("peak memory of the parse process (ru_maxrss)", memory["factory"],
                  memory["dag-factory"], "dag-factory", None, "", command),
    ]


def _scaling(root: Path, settings: ParseSettings) -> list[Row]:
    """Parse the factory's file at a few small registry sizes, to show how parse time grows."""
    rows = []
    for batches in settings.scaling:
        env, _ = _prepare(root / f"scaling-{batches}", batches)
        log(f"parse: growth, {batches} batches")
        result = run_probe([PROBE, str(FACTORY_FILE)], env, settings.timeout_s)
        rows.append(
            Row(
                figure=f"factory parse, {batches} batches x 30 services (1 sample)",
                ours=f"{result['dagbag_s']:.2f} s, {result['tasks']} tasks, "
                     f"{result['edges']} edges",
                reference="",
                ratio=None,
                target="",
                verdict="",
                command=f"bench/run.py --only parse --batches {batches}",
            )
        )
    return rows


def start_up_benchmark(samples: int, batches: int = 500, timeout_s: float = 60) -> list[Row]:
    """Build the DAG of one task as a worker does, with 1 and with ``batches`` registered.

    The newest batch has no newer batch to cascade into, so its DAG has the same shape
    whatever the registry contains. Only the registry's size differs between the two.
    """
    with scratch_dir("start-up") as root:
        alone = _start_up_env(root / "one", 1, "REL-1")
        among = _start_up_env(root / "many", batches, f"REL-{batches}")
        timings = {"one": Samples(), "many": Samples()}
        run_probe([PROBE, str(FACTORY_FILE), "--task-start"], alone, timeout_s)
        for round_number in range(1, samples + 1):
            log(f"start-up: round {round_number}/{samples}")
            for name, env in (("one", alone), ("many", among)):
                result = run_probe([PROBE, str(FACTORY_FILE), "--task-start"], env, timeout_s)
                if result["dags"] != 1:
                    raise RuntimeError(f"expected one DAG at task start-up, got {result['dags']}")
                timings[name].add(result["dagbag_s"])
        command = "bench/run.py --only start-up"
        rows = [
            ratio_row(
                f"task start-up, newest batch's DAG, {batches} batches registered",
                timings["many"], timings["one"], "1 batch registered", 1.10,
                "<= 1.10 x (same within noise)", command,
            )
        ]
        rows.append(_oldest_start_up(root, batches, timings["one"], timeout_s, command))
        return rows


def _start_up_env(root: Path, batches: int, batch_id: str) -> dict[str, str]:
    deployment = build_deployment(root, batches)
    (root / "airflow").mkdir()
    return airflow_env(
        root / "airflow",
        FACTORY_FILE.parent,
        **deployment.env(),
        _AIRFLOW_PARSING_CONTEXT_DAG_ID=f"rollback_{batch_id}",
        _AIRFLOW_PARSING_CONTEXT_TASK_ID=START_UP_TASK,
    )


def _oldest_start_up(
    root: Path, batches: int, alone: Samples, timeout_s: float, command: str
) -> Row:
    """Time one start-up of the oldest batch's task: its DAG cascades into every newer batch."""
    env = airflow_env(
        root / "many" / "airflow",
        FACTORY_FILE.parent,
        ROLLBACK_CONFIG_DIR=str(root / "many" / "config"),
        ROLLBACK_DATA_DIR=str(root / "many" / "data"),
        _AIRFLOW_PARSING_CONTEXT_DAG_ID="rollback_REL-1",
        _AIRFLOW_PARSING_CONTEXT_TASK_ID=START_UP_TASK,
    )
    figure = f"task start-up, oldest batch's DAG, {batches} batches registered (1 sample)"
    log("start-up: oldest batch")
    try:
        result = run_probe([PROBE, str(FACTORY_FILE), "--task-start"], env, timeout_s)
    except ProbeTimeout as error:
        return Row(figure, f"not measured: {error}", f"1 batch registered: {describe(alone)}",
                   None, "<= 1.10 x", "NO", command)
    ours = Samples([result["dagbag_s"]])
    row = ratio_row(figure, ours, alone, "1 batch registered", 1.10, "<= 1.10 x", command)
    row.ours += f", {result['tasks']} tasks"
    return row
