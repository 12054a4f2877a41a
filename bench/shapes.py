"""DAG shapes: what the floor and dag-factory must rebuild to match the factory's DAGs.

A shape contains a DAG's arguments, trigger params, task groups, tasks (id, display name,
trigger rule) and edges, all as JSON. It is taken from the DAGs the factory built, so
the references rebuild exactly what the factory builds, whatever the registry holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

EMPTY_OPERATOR = "airflow.providers.standard.operators.empty.EmptyOperator"


def dag_shape(dag: Any) -> dict[str, Any]:
    """Return the JSON shape of one Airflow DAG."""
    params = {}
    for name in dag.params:
        param = dag.params.get_param(name)
        params[name] = {
            "value": param.value,
            "description": param.description,
            "schema": param.schema,
        }
    groups = {}
    tasks = []
    edges = []
    for task in dag.task_dict.values():
        group = task.task_group
        group_id = group.group_id if group is not None else None
        if group_id is not None and group_id not in groups:
            groups[group_id] = group.tooltip
        local_id = task.task_id.removeprefix(f"{group_id}.") if group_id else task.task_id
        rule = getattr(task.trigger_rule, "value", task.trigger_rule)
        tasks.append([local_id, group_id, task.task_display_name, rule])
        edges += [[task.task_id, downstream] for downstream in sorted(task.downstream_task_ids)]
    return {
        "dag_id": dag.dag_id,
        "arguments": {
            "dag_display_name": dag.dag_display_name,
            "description": dag.description,
            "start_date": dag.start_date.isoformat(),
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "is_paused_upon_creation": dag.is_paused_upon_creation,
            "tags": sorted(dag.tags),
            "doc_md": dag.doc_md,
            "default_args": {key: dag.default_args[key] for key in ("owner", "retries")},
        },
        "params": params,
        "groups": groups,
        "tasks": tasks,
        "edges": edges,
    }


def write_shapes(dags: dict[str, Any], path: Path) -> None:
    shapes = [dag_shape(dags[dag_id]) for dag_id in sorted(dags)]
    path.write_text(json.dumps(shapes))


def write_dag_factory_config(shapes_file: Path, path: Path) -> None:
    """Write the dag-factory YAML that builds the same DAGs as ``shapes_file`` with EmptyOperator.

    dag-factory needs task names unique across a DAG, and prefixes a grouped task's name
    with its group id. Grouped tasks are named ``<group>__<step>`` for that reason, so
    their ids read ``<group>.<group>__<step>``: the same count of tasks, groups and edges.
    Trigger params become plain default values, because YAML cannot express Param objects.
    Each task's copy of the DAG params is then cheaper than the factory's, which favours
    dag-factory.
    """
    config = {}
    for shape in json.loads(shapes_file.read_text()):
        config[shape["dag_id"]] = _dag_factory_dag(shape)
    path.write_text(yaml.safe_dump(config, sort_keys=False, width=1000))


def _dag_factory_dag(shape: dict[str, Any]) -> dict[str, Any]:
    names = {}
    for local_id, group_id, _, _ in shape["tasks"]:
        full_id = f"{group_id}.{local_id}" if group_id else local_id
        names[full_id] = f"{group_id}__{local_id}" if group_id else local_id
    upstream: dict[str, list[str]] = {full_id: [] for full_id in names}
    for source, target in shape["edges"]:
        upstream[target].append(names[source])
    tasks = {}
    for local_id, group_id, display_name, trigger_rule in shape["tasks"]:
        full_id = f"{group_id}.{local_id}" if group_id else local_id
        task: dict[str, Any] = {"operator": EMPTY_OPERATOR, "task_display_name": display_name}
        if trigger_rule != "all_success":
            task["trigger_rule"] = trigger_rule
        if group_id:
            task["task_group_name"] = group_id
        if upstream[full_id]:
            task["dependencies"] = upstream[full_id]
        tasks[names[full_id]] = task
    arguments = dict(shape["arguments"])
    arguments["start_date"] = arguments["start_date"][:10]
    return {
        **arguments,
        "schedule": None,
        "params": {name: param["value"] for name, param in shape["params"].items()},
        "task_groups": {group: {"tooltip": tooltip} for group, tooltip in shape["groups"].items()},
        "tasks": tasks,
    }
