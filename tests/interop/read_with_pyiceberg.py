"""Reads a table featuredb wrote, with PyIceberg, and prints it as JSON.

Usage: read_with_pyiceberg.py DATA_DIR NAMESPACE TABLE
Opens the embedded catalog exactly as the README documents it.
"""
import json
import sys

from pyiceberg.catalog.sql import SqlCatalog

data_dir, namespace, table_name = sys.argv[1:4]
catalog = SqlCatalog(
    "featuredb",
    uri=f"sqlite:///{data_dir}/catalog.db",
    warehouse=f"file://{data_dir}/warehouse",
)
table = catalog.load_table(f"{namespace}.{table_name}")
arrow = table.scan().to_arrow().sort_by("id")
rows = []
for row in arrow.to_pylist():
    rows.append({k: (str(v) if v is not None else None) for k, v in row.items()})
print(json.dumps({
    "namespaces": sorted(".".join(ns) for ns in catalog.list_namespaces()),
    "schema": [f"{f.name}:{f.field_type}" for f in table.schema().fields],
    "snapshots": len(table.metadata.snapshots),
    "rows": rows,
}))
