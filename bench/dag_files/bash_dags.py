"""Reference of the run benchmark: the factory's DAG shape with a BashOperator for every task.

Reads shapes.json beside this file (written by the benchmark from the factory's own DAG)
and builds each DAG again under the id ``bash_<dag id>``: the same task groups, task ids
and edges, every task running ``exit 0`` in bash.
"""

import json
from datetime import datetime
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, TaskGroup


def build_dag(shape: dict) -> DAG:
    with DAG(
        dag_id=f"bash_{shape['dag_id']}",
        schedule=None,
        start_date=datetime.fromisoformat(shape["arguments"]["start_date"]),
        catchup=False,
        default_args=shape["arguments"]["default_args"],
    ) as dag:
        groups = {group_id: TaskGroup(group_id) for group_id in shape["groups"]}
        for local_id, group_id, _, trigger_rule in shape["tasks"]:
            BashOperator(
                task_id=local_id,
                bash_command="exit 0",
                trigger_rule=trigger_rule,
                task_group=groups[group_id] if group_id else None,
            )
        tasks = dag.task_dict
        for source, target in shape["edges"]:
            tasks[source].set_downstream(tasks[target])
    return dag


for _shape in json.loads(Path(__file__).with_name("shapes.json").read_text()):
    globals()[f"bash_{_shape['dag_id']}"] = build_dag(_shape)
