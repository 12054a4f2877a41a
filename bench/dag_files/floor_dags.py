"""Floor of the factory benchmark: the factory's DAG shapes rebuilt in plain Airflow.

Reads shapes.json beside this file (written by the benchmark from the factory's own
DAGs) and builds every DAG with EmptyOperator tasks: the same DAG arguments, trigger
params, task groups, task ids and edges, and no reading of services.yaml, governance.yaml
or the batch registry, no planning and no custom operators.
"""

import json
from datetime import datetime
from pathlib import Path

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param, TaskGroup


def build_dag(shape: dict) -> DAG:
    arguments = dict(shape["arguments"])
    arguments["start_date"] = datetime.fromisoformat(arguments["start_date"])
    params = {
        name: Param(param["value"], description=param["description"], schema=param["schema"])
        for name, param in shape["params"].items()
    }
    with DAG(dag_id=shape["dag_id"], schedule=None, params=params, **arguments) as dag:
        groups = {
            group_id: TaskGroup(group_id, tooltip=tooltip)
            for group_id, tooltip in shape["groups"].items()
        }
        for local_id, group_id, display_name, trigger_rule in shape["tasks"]:
            EmptyOperator(
                task_id=local_id,
                task_display_name=display_name,
                trigger_rule=trigger_rule,
                task_group=groups[group_id] if group_id else None,
            )
        tasks = dag.task_dict
        downstream: dict[str, list] = {}
        for source, target in shape["edges"]:
            downstream.setdefault(source, []).append(tasks[target])
        for source, targets in downstream.items():
            tasks[source].set_downstream(targets)
    return dag


for _shape in json.loads(Path(__file__).with_name("shapes.json").read_text()):
    globals()[_shape["dag_id"]] = build_dag(_shape)
