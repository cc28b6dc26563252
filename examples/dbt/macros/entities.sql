-- Entities are featuredb objects dbt has no materialization for; create them before the run.
{% macro create_entities() %}
  {% do run_query("create entity if not exists " ~ target.schema ~ ".customer (customer_id bigint)") %}
{% endmacro %}
