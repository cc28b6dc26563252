//! Starting the real `featuredb` binary for integration tests.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

/// A featuredb server process on a free port with its own data directory.
pub struct TestServer {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    log: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl TestServer {
    /// Starts a server on a fresh, temporary data directory.
    pub fn start() -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let mut server = Self::start_in(&data_dir);
        server._temp = Some(temp);
        server
    }

    /// Starts a server on `data_dir` (which may hold data from an earlier
    /// server).
    pub fn start_in(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_at(data_dir, None, env)
    }

    /// Starts a server on `data_dir` listening on `port` (which must be
    /// free), e.g. the port of a server killed before.
    pub fn start_on_port(data_dir: &Path, port: u16, env: &[(&str, &str)]) -> Self {
        Self::start_at(data_dir, Some(port), env)
    }

    fn start_at(data_dir: &Path, fixed_port: Option<u16>, env: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let log = data_dir
            .parent()
            .unwrap_or(data_dir)
            .join(format!("server-{}.log", std::process::id()));
        for attempt in 0..5 {
            let port = fixed_port.unwrap_or_else(free_port);
            let log_file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("log file");
            let mut command = Command::new(env!("CARGO_BIN_EXE_featuredb"));
            command
                .arg("serve")
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--data-dir")
                .arg(data_dir)
                .env("FEATUREDB_LOG_LEVEL", "featuredb=debug,info")
                .stdout(Stdio::null())
                .stderr(log_file);
            for (k, v) in env {
                command.env(k, v);
            }
            let child = command.spawn().expect("start featuredb");
            let mut server = Self {
                child: Some(child),
                port,
                data_dir: data_dir.to_path_buf(),
                _temp: None,
                log: log.clone(),
            };
            if server.wait_ready(Duration::from_secs(60)) {
                return server;
            }
            server.kill();
            eprintln!(
                "server did not start (attempt {attempt}); log:\n{}",
                server.log_text()
            );
        }
        panic!("featuredb did not start");
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn connection_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=test dbname=featuredb",
            self.port
        )
    }

    pub fn config(&self) -> tokio_postgres::Config {
        self.connection_string().parse().expect("config")
    }

    /// A connected tokio-postgres client (its connection runs in a task).
    pub async fn client(&self) -> Client {
        let (client, connection) = tokio_postgres::connect(&self.connection_string(), NoTls)
            .await
            .expect("connect");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// Kills the process without warning (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Asks the server to stop (SIGTERM) and waits for it.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running server");
        // SAFETY: signalling a child process we own.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        child.wait().expect("wait for featuredb")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The SQLSTATE of a failed statement.
pub fn sqlstate(error: &tokio_postgres::Error) -> String {
    error
        .code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("<no sqlstate: {error}>"))
}

/// A virtualenv under `target/<name>` with the pinned packages of
/// `requirements` (a path under the repository), created once and reused
/// until the requirements change. Returns its python.
pub fn python_venv(name: &str, requirements: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target").join(name);
    let python = venv.join("bin/python");
    let requirements = root.join(requirements);
    let stamp = venv.join("installed-requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).unwrap();
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return python;
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 -m venv");
    assert!(status.success(), "creating {}", venv.display());
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements)
        .status()
        .expect("pip install");
    assert!(
        status.success(),
        "pip install -r {}",
        requirements.display()
    );
    std::fs::write(&stamp, wanted).unwrap();
    python
}

/// A throw-away PostgreSQL 15 on loopback, to check that expectations are
/// PostgreSQL's. Installed from Debian's packages when missing; the
/// cluster lives in a temporary directory and is stopped on drop.
pub struct ReferencePostgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    run_as_postgres: bool,
}

impl ReferencePostgres {
    pub fn start() -> Self {
        let bin = Self::binaries();
        let dir = tempfile::tempdir().expect("temp dir");
        // initdb refuses to run as root: run the cluster as `postgres`.
        let run_as_postgres = unsafe { libc::geteuid() } == 0;
        if run_as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the cluster directory");
        }
        let reference = Self {
            port: free_port(),
            bin,
            dir,
            run_as_postgres,
        };
        let data = reference.dir.path().join("data");
        let output = reference
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "bench", "--no-sync"])
            .output()
            .expect("initdb");
        assert!(
            output.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            reference.port,
            reference.dir.path().display()
        );
        let output = reference
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(reference.dir.path().join("log"))
            .args(["-w", "start"])
            .output()
            .expect("pg_ctl start");
        assert!(
            output.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        reference
    }

    /// PostgreSQL 15's programs, installing them if needed.
    fn binaries() -> PathBuf {
        let find = || {
            std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .find(|bin| bin.join("initdb").exists())
        };
        if let Some(bin) = find() {
            return bin;
        }
        let status = Command::new("sh")
            .args([
                "-c",
                "(apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15",
            ])
            .status()
            .expect("apt-get");
        assert!(status.success(), "installing postgresql-15");
        find().expect("PostgreSQL binaries after installing postgresql-15")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.run_as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    /// A connection configuration for `database`.
    pub fn config(&self, database: &str) -> tokio_postgres::Config {
        format!(
            "host=127.0.0.1 port={} user=bench dbname={database}",
            self.port
        )
        .parse()
        .expect("connection string")
    }
}

impl Drop for ReferencePostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
