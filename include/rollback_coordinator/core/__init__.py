"""Domain logic of the rollback coordinator. Nothing in this package imports Airflow."""
