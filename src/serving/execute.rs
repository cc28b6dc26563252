//! Finding a lookup's rows: the keys from the parameters, each view's
//! stored row per key, with the TTL checked against the caller's clock and
//! time zone.

use std::sync::Arc;

use chrono::{Duration, Months, NaiveDateTime};
use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano};
use datafusion::common::ScalarValue;

use super::plan::{EventTimeUnit, LookupPlan, Ttl, WindowedPart, WindowedSource};
use super::rows::LookupRows;
use super::service::LookupService;
use super::shape::{KeyMatch, ValueRef};
use crate::error::{Error, Result};
use crate::features::windows::evaluate_windows;
use crate::online::{KeyEncoder, Materialization, StoredRow, value_ranges};
use crate::pgtypes::SessionTimeZone;

impl LookupService {
    /// The rows of `plan` for the keys in `params`, TTLs checked in
    /// `time_zone` (for `timestamp` and `date` event times). `None` when
    /// the plan no longer matches the registry or the online store: the
    /// caller plans the statement again.
    pub fn look_up(
        &self,
        plan: &Arc<LookupPlan>,
        params: &[ScalarValue],
        time_zone: &SessionTimeZone,
    ) -> Result<Option<LookupRows>> {
        let Some(states) = self.current_states(plan) else {
            return Ok(None);
        };
        let keys = keys_of(plan, params)?;
        let now = chrono::Utc::now();
        let cutoffs: Vec<Option<Cutoff>> = plan
            .parts
            .iter()
            .map(|part| part.ttl.and_then(|ttl| cutoff(ttl, now, time_zone)))
            .collect();

        // Each part's stored row per key; keys no part holds have no row.
        let online = &self.online;
        let mut buffer = Vec::with_capacity(64);
        let mut kept = Vec::with_capacity(keys.len());
        let mut found: Vec<Vec<Option<StoredRow>>> =
            vec![Vec::with_capacity(keys.len()); plan.parts.len()];
        for key in keys {
            let mut any = false;
            for (((rows, state), cutoff), part) in
                found.iter_mut().zip(&states).zip(&cutoffs).zip(&plan.parts)
            {
                let mut row = online
                    .get(state, &key.1, &mut buffer)?
                    .filter(|row| cutoff.is_none_or(|c| c.admits(row.event_time())));
                if let (Some(windows), Some(stored)) = (&part.windows, &row) {
                    let t = now_in(windows.unit, now, time_zone);
                    match self.windowed_row(&part.name, windows, &key.1, stored, t)? {
                        Some(assembled) => row = Some(assembled),
                        // Its rows left memory: plan again.
                        None => return Ok(None),
                    }
                }
                any |= row.is_some();
                rows.push(row);
            }
            if any {
                kept.push(key);
            } else {
                for rows in &mut found {
                    rows.pop();
                }
            }
        }
        Ok(Some(LookupRows {
            plan: plan.clone(),
            keys: kept,
            found,
        }))
    }

    /// The online state of each view the plan reads, if the plan still
    /// describes what the registry and the online store hold.
    fn current_states(&self, plan: &LookupPlan) -> Option<Vec<Arc<Materialization>>> {
        let registry = self.registry.snapshot();
        if let Some((name, version)) = &plan.service
            && registry.services.get(name).map(|s| s.current().version) != Some(*version)
        {
            return None;
        }
        plan.parts
            .iter()
            .map(|part| {
                let current = registry.views.get(&part.name)?.current();
                if (current.version, current.online) != (part.version, true) {
                    return None;
                }
                self.online.materialization(&part.name).filter(|state| {
                    state.online
                        && (state.version == part.version
                            || part.shape.as_ref() == Some(&state.shape))
                })
            })
            .collect()
    }
}

impl LookupService {
    /// A windowed view's row for a key: the stored row's other columns,
    /// and each window computed at `t` from the key's rows in memory.
    /// `None` if those rows are not in memory.
    fn windowed_row(
        &self,
        view: &featuredb_catalog::QualifiedName,
        windows: &WindowedPart,
        key: &[u8],
        stored: &StoredRow,
        t: i64,
    ) -> Result<Option<StoredRow>> {
        let Some(values) = self
            .online
            .with_window_events(view, &windows.shape, key, |events| {
                evaluate_windows(&windows.arguments, events, t)
            })
        else {
            return Ok(None);
        };
        let values = values?;
        let base = stored.values();
        let ranges = value_ranges(&windows.base_types, base)?;
        let mut out = Vec::with_capacity(base.len() + values.len() * 9);
        for source in &windows.sources {
            match source {
                WindowedSource::Base(i) => out.extend_from_slice(&base[ranges[*i].clone()]),
                WindowedSource::Window(w) => KeyEncoder::scalar(&values[*w], &mut out)?,
            }
        }
        Ok(Some(StoredRow::assemble(stored.event_time(), &out)))
    }
}

/// `now` as event times of `unit` count it: µs in UTC, or wall-clock µs
/// in the session's time zone for `timestamp`.
fn now_in(
    unit: EventTimeUnit,
    now: chrono::DateTime<chrono::Utc>,
    time_zone: &SessionTimeZone,
) -> i64 {
    match unit {
        EventTimeUnit::WallMicros => match time_zone {
            SessionTimeZone::Named(zone) => now.with_timezone(zone).naive_local(),
            SessionTimeZone::Fixed(offset) => now.with_timezone(offset).naive_local(),
        }
        .and_utc()
        .timestamp_micros(),
        _ => now.timestamp_micros(),
    }
}

/// The oldest event time a view with `ttl` still serves at `now`.
fn cutoff(
    ttl: Ttl,
    now: chrono::DateTime<chrono::Utc>,
    time_zone: &SessionTimeZone,
) -> Option<Cutoff> {
    let wall = |time: chrono::DateTime<chrono::Utc>| match time_zone {
        SessionTimeZone::Named(zone) => time.with_timezone(zone).naive_local(),
        SessionTimeZone::Fixed(offset) => time.with_timezone(offset).naive_local(),
    };
    let (from, micros_per_unit) = match ttl.unit {
        EventTimeUnit::InstantMicros => (now.naive_utc(), 1),
        EventTimeUnit::WallMicros => (wall(now), 1),
        EventTimeUnit::Days => (
            wall(now)
                .date()
                .and_hms_opt(0, 0, 0)
                .expect("midnight exists"),
            86_400_000_000,
        ),
        EventTimeUnit::Integer => return None,
    };
    // A cutoff before the calendar's start admits everything.
    let micros = minus_interval(from, ttl.interval)?
        .and_utc()
        .timestamp_micros();
    Some(Cutoff {
        micros,
        micros_per_unit,
    })
}

/// Event times older than this are expired.
#[derive(Debug, Clone, Copy)]
struct Cutoff {
    micros: i64,
    /// Event times are in days for `date` columns.
    micros_per_unit: i64,
}

impl Cutoff {
    fn admits(&self, event_time: i64) -> bool {
        event_time.saturating_mul(self.micros_per_unit) >= self.micros
    }
}

/// The keys asked for, cast to the key columns' types and encoded, each
/// once, in the order given; NULLs and values no key can equal dropped.
fn keys_of(plan: &LookupPlan, params: &[ScalarValue]) -> Result<Vec<(Vec<ScalarValue>, Vec<u8>)>> {
    let resolve = |v: &ValueRef| -> Result<ScalarValue> {
        match v {
            ValueRef::Param(n) => params
                .get(*n)
                .cloned()
                .ok_or_else(|| Error::Protocol(format!("there is no parameter ${}", n + 1))),
            ValueRef::Literal(value) => Ok(value.clone()),
        }
    };
    let mut key_values: Vec<Vec<ScalarValue>> = Vec::new();
    match &plan.keys {
        KeyMatch::One(values) => {
            key_values.push(values.iter().map(resolve).collect::<Result<_>>()?);
        }
        KeyMatch::List(values) => {
            for v in values {
                key_values.push(vec![resolve(v)?]);
            }
        }
        KeyMatch::Array(n) => match resolve(&ValueRef::Param(*n))? {
            ScalarValue::List(list) if !list.is_null(0) => {
                let values = list.value(0);
                for i in 0..values.len() {
                    key_values.push(vec![ScalarValue::try_from_array(&values, i)?]);
                }
            }
            value if value.is_null() => {}
            other => {
                return Err(Error::DatatypeMismatch(format!(
                    "= ANY needs an array, got {}",
                    other.data_type()
                )));
            }
        },
    }
    let mut encoded: Vec<(Vec<ScalarValue>, Vec<u8>)> = Vec::with_capacity(key_values.len());
    // Each key once; a single key needs no set.
    let many = key_values.len() > 1;
    let mut seen: std::collections::HashSet<Vec<u8>, ahash::RandomState> = match many {
        true => std::collections::HashSet::with_capacity_and_hasher(
            key_values.len(),
            ahash::RandomState::new(),
        ),
        false => std::collections::HashSet::with_hasher(ahash::RandomState::with_seeds(0, 0, 0, 0)),
    };
    'keys: for values in key_values {
        let mut typed = Vec::with_capacity(values.len());
        let mut bytes = Vec::with_capacity(16);
        for (value, data_type) in values.into_iter().zip(&plan.key_types) {
            if value.is_null() {
                continue 'keys;
            }
            let value = if value.data_type() == *data_type {
                value
            } else {
                match key_value(value, data_type)? {
                    Some(value) => value,
                    // A number no key of this type can equal (1.5 for a
                    // bigint key, 2^40 for an integer one).
                    None => continue 'keys,
                }
            };
            KeyEncoder::scalar(&value, &mut bytes)?;
            typed.push(value);
        }
        if !many || seen.insert(bytes.clone()) {
            encoded.push((typed, bytes));
        }
    }
    Ok(encoded)
}

/// `value` as a key of `data_type`: numbers compare by value, as in
/// PostgreSQL (`None` when no key can equal it); text must parse.
fn key_value(value: ScalarValue, data_type: &DataType) -> Result<Option<ScalarValue>> {
    let original = value.data_type();
    if original.is_numeric() {
        return Ok(value
            .cast_to(data_type)
            .ok()
            .filter(|cast| cast.cast_to(&original).ok().as_ref() == Some(&value)));
    }
    value
        .cast_to(data_type)
        .map(Some)
        .map_err(|e| Error::InvalidTextRepresentation {
            message: format!("invalid key value: {}", e.strip_backtrace()),
        })
}

fn minus_interval(time: NaiveDateTime, interval: IntervalMonthDayNano) -> Option<NaiveDateTime> {
    let time = if interval.months >= 0 {
        time.checked_sub_months(Months::new(interval.months as u32))?
    } else {
        time.checked_add_months(Months::new(interval.months.unsigned_abs()))?
    };
    time.checked_sub_signed(Duration::days(interval.days as i64))?
        .checked_sub_signed(Duration::nanoseconds(interval.nanoseconds))
}
