"""taskbench's task engine: a compact scheduler/worker engine in the spirit of dask.distributed."""
