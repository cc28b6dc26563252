{#
  materialized='feature_view': the model's SELECT becomes a featuredb feature view.

  Config:
    entity     name of an entity (unqualified names are taken from the model's schema), or
    key        a column name or a list of them (instead of entity)
    timestamp  the event-time column (required)
    ttl        e.g. '30 days' (optional)
    online     true to keep the newest row per key in the online store (default false)
    refresh    run REFRESH FEATURE VIEW after creating it (default: true when online);
               `dbt … --full-refresh` makes it REFRESH … FULL
    owner, description   registry metadata (description defaults to the model's)
    tags       dbt's own tags (a list) become the registry's comma-separated tags

  Each run issues CREATE OR REPLACE FEATURE VIEW: an unchanged definition keeps its version,
  a changed one becomes the next version (earlier versions stay readable with VERSION n).
#}
{% materialization feature_view, adapter='postgres' %}
  {%- set target_relation = this.incorporate(type='view') -%}
  {%- set existing_relation = load_cached_relation(this) -%}
  {%- if existing_relation is not none and not existing_relation.is_view -%}
    {{ exceptions.raise_compiler_error(
         "featuredb: cannot create feature view " ~ target_relation ~ ": a " ~ existing_relation.type ~
         " of that name exists; drop it first") }}
  {%- endif -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% call statement('main') -%}
    {{ featuredb.create_feature_view_sql(target_relation, sql) }}
  {%- endcall %}

  {%- set online = config.get('online', false) -%}
  {%- if config.get('refresh', online) -%}
    {% call statement('refresh') -%}
      refresh feature view {{ target_relation.include(database=False) }}
      {%- if should_full_refresh() %} full{% endif %}
    {%- endcall %}
  {%- endif -%}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {{ adapter.commit() }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}


{% macro create_feature_view_sql(relation, sql) -%}
  {%- set entity = config.get('entity') -%}
  {%- set key = config.get('key') -%}
  {%- set timestamp = config.get('timestamp') -%}
  {%- if timestamp is none -%}
    {{ exceptions.raise_compiler_error("featuredb: feature_view model " ~ relation ~ " needs config timestamp='column'") }}
  {%- endif -%}
  {%- if (entity is none) == (key is none) -%}
    {{ exceptions.raise_compiler_error("featuredb: feature_view model " ~ relation ~ " needs exactly one of entity= or key=") }}
  {%- endif -%}
  {%- if key is string -%}{%- set key = [key] -%}{%- endif -%}
  {%- set ttl = config.get('ttl') -%}
  {%- set online = config.get('online', false) -%}
  {%- set props = {} -%}
  {%- if config.get('owner') is not none -%}{%- do props.update({'owner': config.get('owner')}) -%}{%- endif -%}
  {#- dbt's own `tags` (a list, for selection) become the registry's comma-separated tags. -#}
  {%- set tags = config.get('tags') -%}
  {%- if tags is not none and tags | length > 0 -%}
    {%- do props.update({'tags': tags if tags is string else tags | join(',')}) -%}
  {%- endif -%}
  {%- set description = config.get('description') or model.description -%}
  {%- if description -%}{%- do props.update({'description': description}) -%}{%- endif -%}

  create or replace feature view {{ relation.include(database=False) }}
  {% if entity is not none -%}
    entity {{ entity if '.' in entity else adapter.quote(relation.schema) ~ '.' ~ entity }}
  {%- else -%}
    key ({{ key | join(', ') }})
  {%- endif %}
  timestamp {{ timestamp }}
  {% if ttl is not none -%} ttl interval {{ featuredb.quote_literal(ttl) }} {%- endif %}
  {{ 'online' if online else 'offline' }}
  {% if props -%}
  with (
    {%- for name, value in props.items() -%}
      {{ name }} = {{ featuredb.quote_literal(value) }}{{ ', ' if not loop.last }}
    {%- endfor -%}
  )
  {%- endif %}
  as
  {{ sql }}
{%- endmacro %}


{% macro quote_literal(value) -%}
  '{{ value | string | replace("'", "''") }}'
{%- endmacro %}
