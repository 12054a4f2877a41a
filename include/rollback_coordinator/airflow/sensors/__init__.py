"""Sensors of a rollback DAG."""
