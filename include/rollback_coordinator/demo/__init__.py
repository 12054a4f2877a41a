"""The sample deployment and the end-to-end demo that `make demo` runs."""
