"""NYC-taxi data in one canonical layout: generated (:func:`generate`) or imported from TLC files
(:func:`import_files`). The layout is described in :mod:`comparisons.data.schema`."""

from taskbench.comparisons.data.generate import generate
from taskbench.comparisons.data.importer import FileReport, ImportReport, import_files, inspect_file
from taskbench.comparisons.data.manifest import (
    GENERATOR_VERSION,
    Manifest,
    dataset_fingerprint,
    read_manifest,
)
from taskbench.comparisons.data.schema import (
    TRIPS_SCHEMA,
    ZONES_SCHEMA,
    DataError,
    trip_files,
    zones_path,
)
from taskbench.comparisons.data.zones import read_zone_lookup, synthetic_zones

__all__ = [
    "GENERATOR_VERSION",
    "TRIPS_SCHEMA",
    "ZONES_SCHEMA",
    "DataError",
    "FileReport",
    "ImportReport",
    "Manifest",
    "dataset_fingerprint",
    "generate",
    "import_files",
    "inspect_file",
    "read_manifest",
    "read_zone_lookup",
    "synthetic_zones",
    "trip_files",
    "zones_path",
]
