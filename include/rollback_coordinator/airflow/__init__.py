"""Airflow adapters: operators, sensors and the DAG factory built on the core package."""
