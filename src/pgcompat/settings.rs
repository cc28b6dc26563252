//! Session parameters: what `SET`, `SHOW` and `RESET` act on, and what the
//! server reports to clients in ParameterStatus messages.

use std::collections::BTreeMap;
use std::time::Duration;

use featuredb_sql::session::SetValue;

use crate::error::{Error, Result};
use crate::pgtypes::OutputContext;
use crate::pgtypes::time_zone::{SessionTimeZone, parse_time_zone};

/// The version string clients see. It must start with a PostgreSQL version
/// number: drivers parse it to decide which features and catalog queries to
/// use (15 matches the psql shipped by Debian, so psql does not warn).
pub const SERVER_VERSION: &str = concat!("15.10 (featuredb ", env!("CARGO_PKG_VERSION"), ")");
pub const SERVER_VERSION_NUM: &str = "150010";

#[derive(Clone, Copy)]
enum Kind {
    ReadOnly,
    Text,
    Bool,
    Int {
        min: i64,
        max: i64,
    },
    /// Milliseconds; accepts units (`5s`, `1min`).
    Milliseconds,
    TimeZone,
    Encoding,
    DateStyle,
    Choice(&'static [&'static str]),
}

struct ParameterDef {
    /// Spelling used in ParameterStatus and SHOW ALL.
    name: &'static str,
    default: &'static str,
    /// Sent to the client in ParameterStatus when it changes (PostgreSQL's
    /// GUC_REPORT parameters).
    reported: bool,
    kind: Kind,
    description: &'static str,
}

const PARAMETERS: &[ParameterDef] = &[
    ParameterDef {
        name: "application_name",
        default: "",
        reported: true,
        kind: Kind::Text,
        description: "Sets the application name to be reported in statistics and logs.",
    },
    ParameterDef {
        name: "bytea_output",
        default: "hex",
        reported: false,
        kind: Kind::Choice(&["hex"]),
        description: "Sets the output format for bytea.",
    },
    ParameterDef {
        name: "client_encoding",
        default: "UTF8",
        reported: true,
        kind: Kind::Encoding,
        description: "Sets the client's character set encoding.",
    },
    ParameterDef {
        name: "client_min_messages",
        default: "notice",
        reported: false,
        kind: Kind::Choice(&[
            "debug5", "debug4", "debug3", "debug2", "debug1", "log", "notice", "warning", "error",
        ]),
        description: "Sets the message levels that are sent to the client.",
    },
    ParameterDef {
        name: "DateStyle",
        default: "ISO, MDY",
        reported: true,
        kind: Kind::DateStyle,
        description: "Sets the display format for date and time values.",
    },
    ParameterDef {
        name: "default_transaction_isolation",
        default: "read committed",
        reported: false,
        kind: Kind::Text,
        description: "Sets the transaction isolation level of each new transaction.",
    },
    ParameterDef {
        name: "default_transaction_read_only",
        default: "off",
        reported: true,
        kind: Kind::Bool,
        description: "Sets the default read-only status of new transactions.",
    },
    ParameterDef {
        name: "extra_float_digits",
        default: "1",
        reported: false,
        kind: Kind::Int { min: -15, max: 3 },
        description: "Sets the number of digits displayed for floating-point values.",
    },
    ParameterDef {
        name: "idle_in_transaction_session_timeout",
        default: "0",
        reported: false,
        kind: Kind::Milliseconds,
        description: "Accepted for compatibility; not enforced.",
    },
    ParameterDef {
        name: "in_hot_standby",
        default: "off",
        reported: true,
        kind: Kind::ReadOnly,
        description: "Shows whether hot standby is currently active.",
    },
    ParameterDef {
        name: "integer_datetimes",
        default: "on",
        reported: true,
        kind: Kind::ReadOnly,
        description: "Shows whether datetimes are integer based.",
    },
    ParameterDef {
        name: "IntervalStyle",
        default: "postgres",
        reported: true,
        kind: Kind::Choice(&["postgres"]),
        description: "Sets the display format for interval values.",
    },
    ParameterDef {
        name: "is_superuser",
        default: "on",
        reported: true,
        kind: Kind::ReadOnly,
        description: "Shows whether the current user is a superuser.",
    },
    ParameterDef {
        name: "lc_messages",
        default: "C",
        reported: false,
        kind: Kind::Text,
        description: "Sets the language in which messages are displayed.",
    },
    ParameterDef {
        name: "lock_timeout",
        default: "0",
        reported: false,
        kind: Kind::Milliseconds,
        description: "Accepted for compatibility; featuredb takes no user-visible locks.",
    },
    ParameterDef {
        name: "max_identifier_length",
        default: "63",
        reported: false,
        kind: Kind::ReadOnly,
        description: "Shows the maximum identifier length.",
    },
    ParameterDef {
        name: "search_path",
        default: "\"$user\", public",
        reported: false,
        kind: Kind::Text,
        description: "Sets the schema search order for names that are not schema-qualified.",
    },
    ParameterDef {
        name: "server_encoding",
        default: "UTF8",
        reported: true,
        kind: Kind::ReadOnly,
        description: "Shows the server (database) character set encoding.",
    },
    ParameterDef {
        name: "server_version",
        default: SERVER_VERSION,
        reported: true,
        kind: Kind::ReadOnly,
        description: "Shows the server version.",
    },
    ParameterDef {
        name: "server_version_num",
        default: SERVER_VERSION_NUM,
        reported: false,
        kind: Kind::ReadOnly,
        description: "Shows the server version as an integer.",
    },
    ParameterDef {
        name: "session_authorization",
        default: "",
        reported: true,
        kind: Kind::ReadOnly,
        description: "Shows the session user name.",
    },
    ParameterDef {
        name: "standard_conforming_strings",
        default: "on",
        reported: true,
        kind: Kind::Choice(&["on"]),
        description: "Causes '...' strings to treat backslashes literally.",
    },
    ParameterDef {
        name: "statement_timeout",
        default: "0",
        reported: false,
        kind: Kind::Milliseconds,
        description: "Sets the maximum allowed duration of any statement.",
    },
    ParameterDef {
        name: "TimeZone",
        default: "UTC",
        reported: true,
        kind: Kind::TimeZone,
        description: "Sets the time zone for displaying and interpreting time stamps.",
    },
    ParameterDef {
        name: "transaction_isolation",
        default: "read committed",
        reported: false,
        kind: Kind::Text,
        description: "Sets the current transaction's isolation level.",
    },
    ParameterDef {
        name: "transaction_read_only",
        default: "off",
        reported: false,
        kind: Kind::Bool,
        description: "Sets the current transaction's read-only status.",
    },
];

fn definition(name: &str) -> Option<&'static ParameterDef> {
    PARAMETERS
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
}

/// Parses a duration setting in PostgreSQL's units (default milliseconds).
fn parse_milliseconds(value: &str) -> Option<u64> {
    let value = value.trim();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let ms = number * factor;
    (ms >= 0.0 && ms < i32::MAX as f64).then(|| ms.round() as u64)
}

/// PostgreSQL's SHOW spelling of a millisecond setting.
fn format_milliseconds(ms: u64) -> String {
    if ms == 0 {
        "0".to_string()
    } else if ms.is_multiple_of(86_400_000) {
        format!("{}d", ms / 86_400_000)
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}min", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn parse_bool(value: &str) -> Option<&'static str> {
    match value.trim().to_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "t" | "y" => Some("on"),
        "off" | "false" | "no" | "0" | "f" | "n" => Some("off"),
        _ => None,
    }
}

/// A parameter whose reported value changed: send it in ParameterStatus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedChange {
    pub name: &'static str,
    pub value: String,
}

/// One row of `pg_settings`.
#[derive(Debug, Clone)]
pub struct SettingRow {
    pub name: String,
    pub setting: String,
    pub unit: Option<&'static str>,
    pub short_desc: String,
    /// `user` (SET changes it) or `internal` (read-only).
    pub context: &'static str,
    pub vartype: &'static str,
    /// `default` or `session`.
    pub source: &'static str,
    pub min_val: Option<String>,
    pub max_val: Option<String>,
    pub enumvals: Option<Vec<String>>,
    pub boot_val: String,
    pub reset_val: String,
}

/// A session's settings as its `pg_settings` shows them, refreshed
/// whenever they change (the catalog reads it while queries run).
pub type SettingsView = std::sync::Arc<std::sync::RwLock<Vec<SettingRow>>>;

#[derive(Debug, Clone)]
pub struct SessionSettings {
    values: BTreeMap<&'static str, String>,
    /// Custom `prefix.name` parameters (PostgreSQL placeholders).
    custom: BTreeMap<String, String>,
    time_zone: SessionTimeZone,
    user: String,
}

impl SessionSettings {
    pub fn new(user: &str) -> Self {
        let mut settings = Self {
            values: BTreeMap::new(),
            custom: BTreeMap::new(),
            time_zone: SessionTimeZone::Named(chrono_tz::UTC),
            user: user.to_string(),
        };
        settings.reset_all();
        settings
    }

    fn default_of(&self, def: &ParameterDef) -> String {
        if def.name == "session_authorization" {
            self.user.clone()
        } else {
            def.default.to_string()
        }
    }

    /// Every reported parameter and its value, for the startup sequence.
    pub fn reported(&self) -> Vec<(&'static str, String)> {
        PARAMETERS
            .iter()
            .filter(|p| p.reported)
            .map(|p| (p.name, self.values.get(p.name).cloned().unwrap_or_default()))
            .collect()
    }

    /// How values are printed under these settings.
    pub fn output_context(&self) -> OutputContext {
        OutputContext {
            time_zone: self.time_zone.clone(),
            extra_float_digits: self.extra_float_digits(),
        }
    }

    pub fn time_zone(&self) -> &SessionTimeZone {
        &self.time_zone
    }

    pub fn extra_float_digits(&self) -> i32 {
        self.values
            .get("extra_float_digits")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    }

    pub fn statement_timeout(&self) -> Option<Duration> {
        let ms = self
            .values
            .get("statement_timeout")
            .and_then(|v| parse_milliseconds(v))
            .unwrap_or(0);
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// The schemas of `search_path`, in order, with `$user` expanded.
    pub fn search_path(&self) -> Vec<String> {
        let raw = self.values.get("search_path").cloned().unwrap_or_default();
        raw.split(',')
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                let unquoted = if s.starts_with('"') && s.ends_with('"') && s.len() >= 2 {
                    s[1..s.len() - 1].replace("\"\"", "\"")
                } else {
                    s.to_lowercase()
                };
                if unquoted == "$user" {
                    self.user.clone()
                } else {
                    unquoted
                }
            })
            .collect()
    }

    /// `SHOW name`.
    pub fn show(&self, name: &str) -> Result<String> {
        if let Some(def) = definition(name) {
            let value = self.values.get(def.name).cloned().unwrap_or_default();
            return Ok(match def.kind {
                Kind::Milliseconds => parse_milliseconds(&value)
                    .map(format_milliseconds)
                    .unwrap_or(value),
                _ => value,
            });
        }
        self.custom
            .get(&name.to_lowercase())
            .cloned()
            .ok_or_else(|| Error::UnknownSetting(name.to_string()))
    }

    /// `SHOW ALL`: name, setting, description.
    pub fn all(&self) -> Vec<(String, String, String)> {
        let mut rows: Vec<_> = PARAMETERS
            .iter()
            .map(|p| {
                (
                    p.name.to_string(),
                    self.show(p.name).unwrap_or_default(),
                    p.description.to_string(),
                )
            })
            .chain(
                self.custom
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone(), String::new())),
            )
            .collect();
        rows.sort_by_key(|(name, _, _)| name.to_lowercase());
        rows
    }

    /// Every setting as `pg_settings` lists it.
    pub fn pg_settings_rows(&self) -> Vec<SettingRow> {
        let mut rows: Vec<SettingRow> = PARAMETERS
            .iter()
            .map(|def| {
                let setting = self.values.get(def.name).cloned().unwrap_or_default();
                let default = self.default_of(def);
                let (vartype, unit, min_val, max_val, enumvals) = match def.kind {
                    Kind::Bool => ("bool", None, None, None, None),
                    Kind::Int { min, max } => (
                        "integer",
                        None,
                        Some(min.to_string()),
                        Some(max.to_string()),
                        None,
                    ),
                    Kind::Milliseconds => (
                        "integer",
                        Some("ms"),
                        Some("0".to_string()),
                        Some(i32::MAX.to_string()),
                        None,
                    ),
                    Kind::Choice(choices) => (
                        "enum",
                        None,
                        None,
                        None,
                        Some(choices.iter().map(|c| c.to_string()).collect()),
                    ),
                    _ => ("string", None, None, None, None),
                };
                SettingRow {
                    name: def.name.to_string(),
                    source: if setting == default {
                        "default"
                    } else {
                        "session"
                    },
                    setting,
                    unit,
                    short_desc: def.description.to_string(),
                    context: if matches!(def.kind, Kind::ReadOnly) {
                        "internal"
                    } else {
                        "user"
                    },
                    vartype,
                    min_val,
                    max_val,
                    enumvals,
                    boot_val: default.clone(),
                    reset_val: default,
                }
            })
            .chain(self.custom.iter().map(|(name, value)| SettingRow {
                name: name.clone(),
                setting: value.clone(),
                unit: None,
                short_desc: String::new(),
                context: "user",
                vartype: "string",
                source: "session",
                min_val: None,
                max_val: None,
                enumvals: None,
                boot_val: String::new(),
                reset_val: String::new(),
            }))
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows
    }

    /// `SET name = value`. Returns the change to report, if any.
    pub fn set(&mut self, name: &str, value: &SetValue) -> Result<Option<ReportedChange>> {
        let values = match value {
            SetValue::Default => return self.reset(name),
            SetValue::Values(values) => values,
        };
        let Some(def) = definition(name) else {
            if name.contains('.') {
                self.custom.insert(name.to_lowercase(), values.join(", "));
                return Ok(None);
            }
            return Err(Error::UnknownSetting(name.to_string()));
        };
        if values.len() > 1 && def.name != "search_path" {
            return Err(Error::InvalidParameterValue(format!(
                "SET {} takes only one argument",
                def.name
            )));
        }
        let joined = if def.name == "search_path" {
            values
                .iter()
                .map(|v| quote_schema(v))
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            values.first().cloned().unwrap_or_default()
        };
        let normalized = self.validate(def, &joined)?;
        self.store(def, normalized)
    }

    fn validate(&mut self, def: &ParameterDef, value: &str) -> Result<String> {
        let invalid = || {
            Error::InvalidParameterValue(format!(
                "invalid value for parameter \"{}\": \"{value}\"",
                def.name
            ))
        };
        Ok(match def.kind {
            Kind::ReadOnly => return Err(Error::ReadOnlySetting(def.name.to_string())),
            Kind::Text => value.to_string(),
            Kind::Bool => parse_bool(value).ok_or_else(invalid)?.to_string(),
            Kind::Int { min, max } => {
                let n: i64 = value.trim().parse().map_err(|_| invalid())?;
                if n < min || n > max {
                    return Err(Error::InvalidParameterValue(format!(
                        "{n} is outside the valid range for parameter \"{}\" ({min} .. {max})",
                        def.name
                    )));
                }
                n.to_string()
            }
            Kind::Milliseconds => parse_milliseconds(value).ok_or_else(invalid)?.to_string(),
            Kind::TimeZone => {
                let (zone, canonical) = parse_time_zone(value).ok_or_else(invalid)?;
                self.time_zone = zone;
                canonical
            }
            Kind::Encoding => {
                let normalized = value.to_uppercase().replace(['-', '_'], "");
                if normalized == "UTF8" || normalized == "UNICODE" {
                    "UTF8".to_string()
                } else {
                    return Err(Error::FeatureNotSupported(format!(
                        "client encoding \"{value}\" is not supported; featuredb speaks UTF8"
                    )));
                }
            }
            Kind::DateStyle => {
                // Output is always ISO; the field order only affects input,
                // which DataFusion parses as ISO.
                let upper = value.to_uppercase();
                if upper.split(',').any(|p| {
                    let p = p.trim();
                    matches!(p, "SQL" | "POSTGRES" | "GERMAN")
                }) {
                    return Err(Error::FeatureNotSupported(format!(
                        "DateStyle \"{value}\" is not supported; only ISO output is"
                    )));
                }
                let order = if upper.contains("DMY") || upper.contains("EURO") {
                    "DMY"
                } else if upper.contains("YMD") {
                    "YMD"
                } else {
                    "MDY"
                };
                format!("ISO, {order}")
            }
            Kind::Choice(choices) => {
                let lower = value.to_lowercase();
                if choices.contains(&lower.as_str()) {
                    lower
                } else {
                    return Err(invalid());
                }
            }
        })
    }

    fn store(
        &mut self,
        def: &'static ParameterDef,
        value: String,
    ) -> Result<Option<ReportedChange>> {
        let changed = self.values.get(def.name) != Some(&value);
        self.values.insert(def.name, value.clone());
        Ok((changed && def.reported).then_some(ReportedChange {
            name: def.name,
            value,
        }))
    }

    /// `RESET name`.
    pub fn reset(&mut self, name: &str) -> Result<Option<ReportedChange>> {
        let Some(def) = definition(name) else {
            if self.custom.remove(&name.to_lowercase()).is_some() || name.contains('.') {
                return Ok(None);
            }
            return Err(Error::UnknownSetting(name.to_string()));
        };
        if matches!(def.kind, Kind::ReadOnly) {
            return Err(Error::ReadOnlySetting(def.name.to_string()));
        }
        if matches!(def.kind, Kind::TimeZone) {
            self.time_zone = SessionTimeZone::Named(chrono_tz::UTC);
        }
        let default = self.default_of(def);
        self.store(def, default)
    }

    /// `RESET ALL` / `DISCARD ALL`. Returns every reported change.
    pub fn reset_all(&mut self) -> Vec<ReportedChange> {
        self.custom.clear();
        self.time_zone = SessionTimeZone::Named(chrono_tz::UTC);
        let mut changes = Vec::new();
        for def in PARAMETERS {
            let default = self.default_of(def);
            if let Ok(Some(change)) = self.store(def, default) {
                changes.push(change);
            }
        }
        changes
    }

    /// The name a setting is kept under (`timezone` → `TimeZone`).
    pub fn canonical_name(name: &str) -> String {
        definition(name)
            .map(|def| def.name.to_string())
            .unwrap_or_else(|| name.to_lowercase())
    }

    /// Puts back the values `saved` had: of every setting, or only of
    /// `names` (canonical). Returns the reported changes.
    pub fn restore_from(
        &mut self,
        saved: &SessionSettings,
        names: Option<&std::collections::BTreeSet<String>>,
    ) -> Vec<ReportedChange> {
        let wanted = |name: &str| names.is_none_or(|names| names.contains(name));
        let mut changes = Vec::new();
        for def in PARAMETERS.iter().filter(|def| wanted(def.name)) {
            let value = saved.values.get(def.name).cloned().unwrap_or_default();
            if matches!(def.kind, Kind::TimeZone) {
                self.time_zone = saved.time_zone.clone();
            }
            if let Ok(Some(change)) = self.store(def, value) {
                changes.push(change);
            }
        }
        match names {
            None => self.custom = saved.custom.clone(),
            Some(names) => {
                for name in names.iter().filter(|n| definition(n).is_none()) {
                    match saved.custom.get(name) {
                        Some(value) => {
                            self.custom.insert(name.clone(), value.clone());
                        }
                        None => {
                            self.custom.remove(name);
                        }
                    }
                }
            }
        }
        changes
    }

    /// Applies a parameter sent in the startup message. Unknown or invalid
    /// ones are ignored with a warning rather than failing the connection.
    pub fn apply_startup(&mut self, name: &str, value: &str) {
        if let Err(e) = self.set(name, &SetValue::Values(vec![value.to_string()])) {
            tracing::debug!(parameter = name, error = %e, "ignoring startup parameter");
        }
    }
}

fn quote_schema(schema: &str) -> String {
    if schema == "$user" {
        "\"$user\"".to_string()
    } else {
        featuredb_catalog::names::quote_ident(schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: &[&str]) -> SetValue {
        SetValue::Values(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn defaults_and_reported() {
        let settings = SessionSettings::new("alice");
        assert_eq!(settings.show("timezone").unwrap(), "UTC");
        assert_eq!(settings.show("DATESTYLE").unwrap(), "ISO, MDY");
        assert_eq!(settings.show("session_authorization").unwrap(), "alice");
        let reported: Vec<_> = settings.reported().into_iter().map(|(n, _)| n).collect();
        assert!(reported.contains(&"server_version"));
        assert!(reported.contains(&"standard_conforming_strings"));
        assert_eq!(settings.search_path(), vec!["alice", "public"]);
    }

    #[test]
    fn set_and_reset() {
        let mut s = SessionSettings::new("u");
        let change = s.set("TimeZone", &values(&["europe/paris"])).unwrap();
        assert_eq!(change.unwrap().value, "Europe/Paris");
        assert_eq!(s.time_zone().datafusion_name(), "Europe/Paris");
        assert!(s.set("timezone", &values(&["Mars/Olympus"])).is_err());
        s.set("statement_timeout", &values(&["1500"])).unwrap();
        assert_eq!(s.statement_timeout(), Some(Duration::from_millis(1500)));
        s.set("statement_timeout", &values(&["5s"])).unwrap();
        assert_eq!(s.show("statement_timeout").unwrap(), "5s");
        s.reset("statement_timeout").unwrap();
        assert_eq!(s.statement_timeout(), None);
        assert!(matches!(
            s.set("server_version", &values(&["1"])),
            Err(Error::ReadOnlySetting(_))
        ));
        assert!(matches!(
            s.set("no_such_thing", &values(&["1"])),
            Err(Error::UnknownSetting(_))
        ));
        s.set("myapp.flag", &values(&["x"])).unwrap();
        assert_eq!(s.show("myapp.flag").unwrap(), "x");
        assert!(s.set("extra_float_digits", &values(&["4"])).is_err());
        s.set("search_path", &values(&["Sales", "public"])).unwrap();
        assert_eq!(s.search_path(), vec!["Sales", "public"]);
    }
}
