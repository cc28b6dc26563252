//! The `featuredb` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use featuredb::config::{Overrides, ServerConfig};
use tracing_subscriber::EnvFilter;

// glibc's malloc returns large blocks to the kernel and takes fresh zeroed
// pages on the next query (page faults were ~15% of an AS OF join's time);
// mimalloc keeps and reuses them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "featuredb", version, about = "A SQL-native feature database")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (PostgreSQL protocol).
    Serve {
        /// Address to listen on [default: 127.0.0.1:5433; env FEATUREDB_LISTEN]
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
        /// Directory for the Unix-domain socket .s.PGSQL.PORT, "" for none
        /// [default: the data directory; env FEATUREDB_UNIX_SOCKET_DIR]
        // (clap's PathBuf parser refuses the empty value that means none.)
        #[arg(long, value_name = "DIR", value_parser = clap::builder::TypedValueParser::map(clap::builder::OsStringValueParser::new(), PathBuf::from))]
        unix_socket_dir: Option<PathBuf>,
        /// Data directory [default: ./featuredb-data; env FEATUREDB_DATA_DIR]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// TOML configuration file [env FEATUREDB_CONFIG]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Log filter, e.g. info or featuredb=debug [env FEATUREDB_LOG_LEVEL]
        #[arg(long, value_name = "FILTER")]
        log_level: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            listen,
            unix_socket_dir,
            data_dir,
            config,
            log_level,
        } => {
            let overrides = Overrides {
                listen,
                unix_socket_dir,
                data_dir,
                log_level,
            };
            let config = match ServerConfig::load(config.as_deref(), &overrides) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("featuredb: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let filter =
                EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .init();
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("featuredb")
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("featuredb: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(featuredb::server::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("featuredb: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_unix_socket_dir_means_none_and_is_accepted() {
        let cli = Cli::try_parse_from(["featuredb", "serve", "--unix-socket-dir", ""]).unwrap();
        let Command::Serve {
            unix_socket_dir, ..
        } = cli.command;
        assert_eq!(unix_socket_dir, Some(PathBuf::new()));
    }
}
