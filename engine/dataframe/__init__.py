"""A partitioned DataFrame on the engine: pandas partitions behind task keys.

Collections are lazy graphs (`engine.dataframe.core` states the policy); ``compute()``
returns pandas, ``persist()`` keeps the partitions on the cluster's workers, and
``compute(a, b, c)`` / ``persist(a, b)`` send several as one graph. Before a graph is sent,
partition-wise steps are fused into one task per partition (`engine.dataframe.optimize`).
The shuffle has implementations chosen by name (`engine.dataframe.shuffle`).
"""

from taskbench.engine.dataframe.core import DataFrame, Scalar, Series, compute, persist
from taskbench.engine.dataframe.groupby import GroupBy
from taskbench.engine.dataframe.io import from_map, from_pandas, read_csv, read_parquet
from taskbench.engine.dataframe.join import merge
from taskbench.engine.dataframe.shuffle import (
    SHUFFLE_METHODS,
    hash_columns,
    partition_by_hash,
    register_shuffle_method,
    shuffle,
)
from taskbench.engine.dataframe.sort import set_index, sort_values, sort_within_partitions

__all__ = [
    "SHUFFLE_METHODS",
    "DataFrame",
    "GroupBy",
    "Scalar",
    "Series",
    "compute",
    "from_map",
    "from_pandas",
    "hash_columns",
    "merge",
    "partition_by_hash",
    "persist",
    "read_csv",
    "read_parquet",
    "register_shuffle_method",
    "set_index",
    "shuffle",
    "sort_values",
    "sort_within_partitions",
]
