"""dag-factory reference of the factory benchmark: the same Airflow DAG shapes built from YAML.

dags.yaml beside this file is written by the benchmark from the factory's own DAGs.
"""

from pathlib import Path

from dagfactory import load_yaml_dags

# load_yaml_dags needs a folder to look for defaults.yml in; this one has none.
_HERE = Path(__file__).parent
load_yaml_dags(
    globals_dict=globals(),
    config_filepath=str(_HERE / "dags.yaml"),
    defaults_config_path=str(_HERE),
)
