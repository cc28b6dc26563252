"""What Superset reads when a featuredb table or feature view becomes a
dataset: SQLAlchemy 1.4's PostgreSQL inspector (Superset's own pin), over
psycopg2. Usage: inspect_session.py URL"""
import sys

from sqlalchemy import create_engine, inspect

inspector = inspect(create_engine(sys.argv[1]))
print("schemas:", [s for s in inspector.get_schema_names() if s in ("public", "featuredb")])
print("tables:", inspector.get_table_names("public"))
print("views:", inspector.get_view_names("public"))
for relation in ("events", "user_spend"):
    print(f"-- {relation}")
    for column in inspector.get_columns(relation, "public"):
        print(f"  {column['name']}: {column['type']!r} nullable={column['nullable']}")
    print("  primary key:", inspector.get_pk_constraint(relation, "public"))
    print("  foreign keys:", inspector.get_foreign_keys(relation, "public"))
    print("  indexes:", inspector.get_indexes(relation, "public"))
    print("  unique:", inspector.get_unique_constraints(relation, "public"))
    print("  comment:", inspector.get_table_comment(relation, "public"))
print("view definition:", inspector.get_view_definition("user_spend", "public"))
