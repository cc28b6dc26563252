//! Reading a windowed view as of a time, in SQL: the reference for every
//! other way of reading it (online lookups compute the same numbers).

use featuredb_catalog::FeatureViewVersion;
use featuredb_catalog::names::quote_ident;

use super::definition::WindowedView;
use crate::offline::write_order::WRITE_ORDER_COLUMN;

/// The SQL reading a windowed view as of `time` (an expression of the
/// view's event time type): the newest row at or before `time` per key,
/// with each windowed feature aggregated over `[time − W, time]`.
pub fn as_of_sql(view: &FeatureViewVersion, windowed: &WindowedView, time: &str) -> String {
    let ts = quote_ident(&view.timestamp);
    let keys: Vec<String> = view.keys.iter().map(|k| quote_ident(k)).collect();
    let base = &windowed.base_query;
    let not_null: Vec<String> = keys.iter().map(|k| format!("{k} IS NOT NULL")).collect();
    let mut newest_conditions = not_null.clone();
    newest_conditions.push(format!("{ts} <= {time}"));
    if let Some(ttl) = &view.ttl {
        newest_conditions.push(format!("{ts} >= {time} - {ttl}"));
    }
    // Ties on event time: the row written last, where the base reads its
    // one table in write order (as online, where the later write wins);
    // otherwise a deterministic order on the other columns.
    let mut order = vec![format!("{ts} DESC")];
    let write_ordered = view
        .windowed_base
        .as_ref()
        .and_then(|b| b.write_ordered_query.as_deref());
    let newest_base = match write_ordered {
        Some(query) => {
            order.push(format!("{WRITE_ORDER_COLUMN} DESC"));
            query
        }
        None => {
            order.extend(
                view.columns
                    .iter()
                    .filter(|c| {
                        !view.keys.contains(&c.name)
                            && c.name != view.timestamp
                            && !windowed.features.iter().any(|f| f.name == c.name)
                    })
                    .map(|c| format!("{} DESC NULLS LAST", quote_ident(&c.name))),
            );
            base.as_str()
        }
    };
    let aggregates: Vec<String> = windowed
        .features
        .iter()
        .map(|f| {
            let argument = f
                .argument
                .as_deref()
                .map(quote_ident)
                .unwrap_or_else(|| "*".into());
            format!(
                "{}({argument}) FILTER (WHERE {ts} >= {time} - INTERVAL '{} microseconds') AS {}",
                f.function.sql_name(),
                f.width_micros,
                quote_ident(&f.name)
            )
        })
        .collect();
    let mut window_conditions = not_null;
    window_conditions.push(format!("{ts} <= {time}"));
    window_conditions.push(format!(
        "{ts} >= {time} - INTERVAL '{} microseconds'",
        windowed.widest_micros
    ));
    let join: Vec<String> = keys
        .iter()
        .map(|k| format!("featuredb_newest.{k} = featuredb_windows.{k}"))
        .collect();
    let columns: Vec<String> = view
        .columns
        .iter()
        .map(|c| {
            let name = quote_ident(&c.name);
            match windowed.features.iter().find(|f| f.name == c.name) {
                Some(f) if f.function.zero_when_empty() => {
                    format!("COALESCE(featuredb_windows.{name}, 0) AS {name}")
                }
                Some(_) => format!("featuredb_windows.{name} AS {name}"),
                None => format!("featuredb_newest.{name} AS {name}"),
            }
        })
        .collect();
    format!(
        "SELECT {columns} FROM \
         (SELECT *, row_number() OVER (PARTITION BY {partition} ORDER BY {order}) AS featuredb_rank \
          FROM ({newest_base}) AS featuredb_history WHERE {newest}) AS featuredb_newest \
         LEFT JOIN (SELECT {partition}, {aggregates} FROM ({base}) AS featuredb_events \
          WHERE {window} GROUP BY {partition}) AS featuredb_windows ON {join} \
         WHERE featuredb_newest.featuredb_rank = 1",
        columns = columns.join(", "),
        partition = keys.join(", "),
        order = order.join(", "),
        newest = newest_conditions.join(" AND "),
        aggregates = aggregates.join(", "),
        window = window_conditions.join(" AND "),
        join = join.join(" AND "),
    )
}
