//! Server configuration: one typed struct, from defaults, an optional TOML
//! file, `FEATUREDB_*` environment variables and command-line flags, each
//! overriding the one before.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the PostgreSQL protocol listens on.
    pub listen: String,
    /// Directory of the Unix-domain socket `.s.PGSQL.<port>` (`psql -h
    /// DIR`); the data directory if unset, none if empty.
    pub unix_socket_dir: Option<PathBuf>,
    /// Where the catalog, the warehouse and scratch files live.
    pub data_dir: PathBuf,
    /// `tracing` filter, e.g. `info` or `featuredb=debug`.
    pub log_level: String,
    /// Largest protocol message accepted, in bytes.
    pub max_message_size: usize,
    /// Memory all queries together may use (e.g. "4GiB"); unlimited if unset.
    pub memory_limit: Option<String>,
    /// Query parallelism; the number of CPUs if unset.
    pub target_partitions: Option<usize>,
    /// Seconds to let running statements finish on shutdown.
    pub shutdown_timeout_secs: u64,
    /// Small writes are logged, then committed to Iceberg at least this
    /// often (milliseconds; default 1000).
    pub flush_interval_ms: Option<u64>,
    /// Memory for the online store's row cache (e.g. "1GiB"; default
    /// 256MiB). Rows beyond it are read from redb.
    pub online_cache_size: Option<String>,
    /// Threads that serve connections' protocol and online lookups, each
    /// its own event loop (queries run on the query runtime); the number
    /// of CPUs if unset, 0 to serve connections on the query runtime.
    pub protocol_threads: Option<usize>,
    /// Pin each protocol thread to its own CPU (when there are no more
    /// threads than CPUs) and serve each TCP connection on the thread of
    /// the CPU its packets arrive on (default true).
    pub pin_protocol_threads: bool,
    /// Send protocol threads' replies through io_uring, one submission per
    /// turn of the thread's event loop, where the kernel allows it
    /// (default true; Linux only).
    pub io_uring: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:5433".to_string(),
            unix_socket_dir: None,
            data_dir: PathBuf::from("featuredb-data"),
            log_level: "info".to_string(),
            max_message_size: 256 * 1024 * 1024,
            memory_limit: None,
            target_partitions: None,
            shutdown_timeout_secs: 30,
            flush_interval_ms: None,
            online_cache_size: None,
            protocol_threads: None,
            pin_protocol_threads: true,
            io_uring: true,
        }
    }
}

/// How connections are placed (from the server configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementSettings {
    /// Protocol threads; 0 serves connections on the query runtime.
    pub protocol_threads: usize,
    /// Pin each protocol thread to a CPU (when there are no more threads
    /// than CPUs the process may use) and serve a TCP connection on the
    /// thread of the CPU its packets arrive on.
    pub pin_protocol_threads: bool,
    /// Send protocol threads' replies through io_uring where the kernel
    /// allows it.
    pub io_uring: bool,
}

/// Settings given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub unix_socket_dir: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub log_level: Option<String>,
}

impl ServerConfig {
    /// Builds the configuration: defaults, then `config_file` (or
    /// `FEATUREDB_CONFIG`), then the environment, then `flags`.
    pub fn load(config_file: Option<&Path>, flags: &Overrides) -> Result<Self> {
        Self::load_from(config_file, flags, |name| std::env::var(name).ok())
    }

    fn load_from(
        config_file: Option<&Path>,
        flags: &Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let file = config_file
            .map(Path::to_path_buf)
            .or_else(|| env("FEATUREDB_CONFIG").map(PathBuf::from));
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| Error::io(format!("reading config file {}", path.display()), e))?;
                toml::from_str(&text).map_err(|e| {
                    Error::InvalidParameterValue(format!(
                        "invalid config file {}: {e}",
                        path.display()
                    ))
                })?
            }
            None => ServerConfig::default(),
        };
        if let Some(v) = env("FEATUREDB_LISTEN") {
            config.listen = v;
        }
        if let Some(v) = env("FEATUREDB_UNIX_SOCKET_DIR") {
            config.unix_socket_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = env("FEATUREDB_DATA_DIR") {
            config.data_dir = PathBuf::from(v);
        }
        if let Some(v) = env("FEATUREDB_LOG_LEVEL") {
            config.log_level = v;
        }
        if let Some(v) = env("FEATUREDB_MAX_MESSAGE_SIZE") {
            config.max_message_size = parse_bytes(&v)? as usize;
        }
        if let Some(v) = env("FEATUREDB_MEMORY_LIMIT") {
            config.memory_limit = Some(v);
        }
        if let Some(v) = env("FEATUREDB_FLUSH_INTERVAL_MS") {
            config.flush_interval_ms = Some(v.parse().map_err(|_| {
                Error::InvalidParameterValue(format!(
                    "FEATUREDB_FLUSH_INTERVAL_MS: not a number: {v}"
                ))
            })?);
        }
        if let Some(v) = env("FEATUREDB_ONLINE_CACHE_SIZE") {
            parse_bytes(&v)?;
            config.online_cache_size = Some(v);
        }
        if let Some(v) = env("FEATUREDB_TARGET_PARTITIONS") {
            config.target_partitions = Some(v.parse().map_err(|_| {
                Error::InvalidParameterValue(format!(
                    "FEATUREDB_TARGET_PARTITIONS: not a number: {v}"
                ))
            })?);
        }
        if let Some(v) = env("FEATUREDB_PROTOCOL_THREADS") {
            config.protocol_threads = Some(v.parse().map_err(|_| {
                Error::InvalidParameterValue(format!(
                    "FEATUREDB_PROTOCOL_THREADS: not a number: {v}"
                ))
            })?);
        }
        if let Some(v) = env("FEATUREDB_PIN_PROTOCOL_THREADS") {
            config.pin_protocol_threads = parse_bool("FEATUREDB_PIN_PROTOCOL_THREADS", &v)?;
        }
        if let Some(v) = env("FEATUREDB_IO_URING") {
            config.io_uring = parse_bool("FEATUREDB_IO_URING", &v)?;
        }
        if let Some(v) = &flags.listen {
            config.listen = v.clone();
        }
        if let Some(v) = &flags.unix_socket_dir {
            config.unix_socket_dir = Some(v.clone());
        }
        if let Some(v) = &flags.data_dir {
            config.data_dir = v.clone();
        }
        if let Some(v) = &flags.log_level {
            config.log_level = v.clone();
        }
        Ok(config)
    }

    /// How connections are placed on threads.
    pub fn placement(&self) -> PlacementSettings {
        PlacementSettings {
            protocol_threads: self.protocol_threads.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            }),
            pin_protocol_threads: self.pin_protocol_threads,
            io_uring: self.io_uring,
        }
    }

    /// `memory_limit` in bytes.
    pub fn memory_limit_bytes(&self) -> Result<Option<usize>> {
        self.memory_limit
            .as_deref()
            .map(|v| parse_bytes(v).map(|b| b as usize))
            .transpose()
    }
}

/// A boolean setting from the environment: true/false, on/off, 1/0.
fn parse_bool(name: &str, text: &str) -> Result<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Ok(true),
        "false" | "off" | "no" | "0" => Ok(false),
        _ => Err(Error::InvalidParameterValue(format!(
            "{name}: not a boolean: {text}"
        ))),
    }
}

/// Parses "1024", "64MB", "4GiB", "512kb".
pub fn parse_bytes(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| Error::InvalidParameterValue(format!("not a size: {text}")))?;
    let factor: u64 = match unit.trim().to_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(Error::InvalidParameterValue(format!(
                "unknown size unit \"{other}\" in {text}"
            )));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| Error::InvalidParameterValue(format!("size too large: {text}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("featuredb.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:6000\"\nlog_level = \"debug\"\n").unwrap();
        let env = |name: &str| match name {
            "FEATUREDB_LOG_LEVEL" => Some("warn".to_string()),
            "FEATUREDB_DATA_DIR" => Some("/env/dir".to_string()),
            _ => None,
        };
        let flags = Overrides {
            data_dir: Some(PathBuf::from("/flag/dir")),
            ..Default::default()
        };
        let config = ServerConfig::load_from(Some(&file), &flags, env).unwrap();
        assert_eq!(config.listen, "0.0.0.0:6000");
        assert_eq!(config.log_level, "warn");
        assert_eq!(config.data_dir, PathBuf::from("/flag/dir"));
    }

    #[test]
    fn defaults_and_sizes() {
        let config = ServerConfig::load_from(None, &Overrides::default(), |_| None).unwrap();
        assert_eq!(config.listen, "127.0.0.1:5433");
        assert_eq!(config.data_dir, PathBuf::from("featuredb-data"));
        assert!(config.pin_protocol_threads && config.io_uring);
        assert_eq!(parse_bytes("64MB").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("4GiB").unwrap(), 4 << 30);
        assert!(parse_bytes("4 parsecs").is_err());
    }

    #[test]
    fn placement_settings_from_the_environment() {
        let env = |name: &str| match name {
            "FEATUREDB_PIN_PROTOCOL_THREADS" => Some("off".to_string()),
            "FEATUREDB_IO_URING" => Some("false".to_string()),
            "FEATUREDB_PROTOCOL_THREADS" => Some("3".to_string()),
            _ => None,
        };
        let config = ServerConfig::load_from(None, &Overrides::default(), env).unwrap();
        let placement = config.placement();
        assert_eq!(placement.protocol_threads, 3);
        assert!(!placement.pin_protocol_threads && !placement.io_uring);
        let bad = |name: &str| (name == "FEATUREDB_IO_URING").then(|| "maybe".to_string());
        assert!(ServerConfig::load_from(None, &Overrides::default(), bad).is_err());
    }

    #[test]
    fn rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        assert!(ServerConfig::load_from(Some(&file), &Overrides::default(), |_| None).is_err());
    }
}
