"""Operators of a rollback DAG: plan authorization, service steps and the final audit."""
