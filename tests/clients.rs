//! Real clients against the real server, each with a scripted session
//! (`tests/clients/<client>/`). A script's output is compared with the
//! output it is expected to print, so a change in what a client sees (a
//! catalog column, a type name, an error) fails here.
//!
//! The clients are installed by the tests: psql from Debian's
//! postgresql-client when it is missing, Python drivers in a virtualenv
//! and node-postgres with npm, both under `target/` from pinned versions,
//! pgJDBC from Debian's libpostgresql-jdbc-java.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestServer;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Installs a Debian package when `command` is not on the PATH.
fn ensure_command(command: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {command}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return;
    }
    let status = Command::new("sh")
        .args([
            "-c",
            &format!(
                "(apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {package}"
            ),
        ])
        .status()
        .expect("apt-get");
    assert!(status.success(), "installing {package} for {command}");
}

/// A virtualenv with the pinned Python clients, created once and reused.
fn python_clients() -> PathBuf {
    common::python_venv("clients-venv", "tests/clients/python/requirements.txt")
}

/// Runs a client session and returns what it printed; fails the test with
/// its output if it fails.
fn run_session(mut command: Command, label: &str) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {label}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{label} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// node-postgres and its helpers, installed once with npm under `target/`.
fn node_modules() -> PathBuf {
    ensure_command("node", "nodejs npm");
    let dir = root().join("target/clients-node");
    let package = root().join("tests/clients/node/package.json");
    let stamp = dir.join("installed-package.json");
    let wanted = std::fs::read_to_string(&package).unwrap();
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return dir.join("node_modules");
    }
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("package.json"), &wanted).unwrap();
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent"])
        .current_dir(&dir)
        .status()
        .expect("npm install");
    assert!(status.success(), "npm install in {}", dir.display());
    std::fs::write(&stamp, wanted).unwrap();
    dir.join("node_modules")
}

/// Compares `actual` with the expected file; `UPDATE_EXPECTED=1` rewrites
/// the file instead (review the diff before committing it).
fn assert_expected(actual: &str, expected_file: &Path) {
    if std::env::var_os("UPDATE_EXPECTED").is_some() {
        std::fs::write(expected_file, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(expected_file).unwrap_or_default();
    if actual != expected {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (e, a))| e != a)
            .take(10)
            .map(|(i, (e, a))| format!("line {}:\n  expected: {e}\n  actual:   {a}", i + 1))
            .collect();
        panic!(
            "output differs from {} ({} vs {} lines)\n{}\n--- actual output ---\n{actual}",
            expected_file.display(),
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

#[test]
fn psql_session() {
    ensure_command("psql", "postgresql-client");
    let server = TestServer::start();
    let dir = root().join("tests/clients/psql");
    let output = Command::new("psql")
        .current_dir(root())
        .args(["-X", "-h", "127.0.0.1", "-U", "test", "-d", "featuredb"])
        .args(["-p", &server.port.to_string()])
        .arg("-f")
        .arg(dir.join("session.sql"))
        .env("PGTZ", "UTC")
        .output()
        .expect("run psql");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Timings vary from run to run; the rest is exact.
    let mut actual: String = stdout
        .lines()
        .filter(|line| !line.starts_with("Time: "))
        .map(|line| format!("{line}\n"))
        .collect();
    actual.push_str("--- stderr ---\n");
    actual.push_str(&stderr.replace(
        &dir.join("session.sql").display().to_string(),
        "session.sql",
    ));
    assert_expected(&actual, &dir.join("expected.out"));

    // Tab completion, typed into psql on a pseudo-terminal, over the
    // objects the session created.
    let mut command = Command::new("python3");
    command
        .arg(dir.join("tab_completion.py"))
        .arg(server.port.to_string());
    let completions = run_session(command, "psql tab completion");
    assert_expected(&completions, &dir.join("tab_completion.expected"));

    // psql's own way to a local server: -h names the socket's directory.
    let local = Command::new("psql")
        .args(["-X", "-At", "-U", "test", "-d", "featuredb"])
        .arg("-h")
        .arg(&server.data_dir)
        .args(["-p", &server.port.to_string()])
        .args(["-c", "SELECT current_user, 6 * 7"])
        .output()
        .expect("run psql over the Unix-domain socket");
    assert_eq!(
        String::from_utf8_lossy(&local.stdout),
        "test|42\n",
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
}

#[test]
fn python_clients_sessions() {
    let python = python_clients();
    let server = TestServer::start();
    for script in [
        "psycopg3_session.py",
        "psycopg2_session.py",
        "sqlalchemy_session.py",
        "asyncpg_session.py",
    ] {
        let dir = root().join("tests/clients/python");
        let mut command = Command::new(&python);
        command
            .arg(dir.join(script))
            .arg(server.connection_string());
        let stdout = run_session(command, script);
        let expected = dir.join(script.replace(".py", ".expected"));
        assert_expected(&stdout, &expected);
    }
}

#[test]
fn node_postgres_session() {
    let modules = node_modules();
    let server = TestServer::start();
    let dir = root().join("tests/clients/node");
    let mut command = Command::new("node");
    command
        .arg(dir.join("session.js"))
        .arg(server.connection_string())
        .env("NODE_PATH", &modules);
    let stdout = run_session(command, "node-postgres session");
    assert_expected(&stdout, &dir.join("session.expected"));
}

#[test]
fn pgjdbc_session() {
    ensure_command("javac", "default-jdk-headless");
    let jar = Path::new("/usr/share/java/postgresql.jar");
    if !jar.exists() {
        let status = Command::new("sh")
            .args([
                "-c",
                "(apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpostgresql-jdbc-java",
            ])
            .status()
            .expect("apt-get");
        assert!(status.success(), "installing libpostgresql-jdbc-java");
    }
    let classes = root().join("target/clients-jdbc");
    std::fs::create_dir_all(&classes).unwrap();
    let dir = root().join("tests/clients/jdbc");
    let status = Command::new("javac")
        .arg("-d")
        .arg(&classes)
        .arg("-cp")
        .arg(jar)
        .arg(dir.join("Session.java"))
        .status()
        .expect("javac");
    assert!(status.success(), "compiling Session.java");
    let server = TestServer::start();
    let mut command = Command::new("java");
    command
        .arg("-Duser.timezone=UTC")
        .arg("-cp")
        .arg(format!("{}:{}", jar.display(), classes.display()))
        .arg("Session")
        .arg(server.connection_string());
    let stdout = run_session(command, "pgJDBC session");
    assert_expected(&stdout, &dir.join("session.expected"));
}

/// Copies a directory tree (the dbt example project, without what dbt
/// generates in it).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if ["target", "logs", "dbt_packages", "package-lock.yml"]
            .iter()
            .any(|generated| name == *generated)
        {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// dbt-postgres, unmodified, builds `examples/dbt` twice (the second run
/// is incremental and swaps rebuilt models in with ALTER … RENAME, reloads
/// seeds with TRUNCATE) and generates its docs; the feature view the
/// featuredb macro package defines serves online lookups.
#[test]
fn dbt_project_builds_twice() {
    let python = common::python_venv("clients-dbt-venv", "tests/clients/dbt/requirements.txt");
    let dbt = python.with_file_name("dbt");
    let server = TestServer::start();
    let project = tempfile::tempdir().unwrap();
    copy_tree(&root().join("examples/dbt"), project.path());
    let run = |args: &[&str]| {
        let mut command = Command::new(&dbt);
        command
            .args(args)
            .current_dir(project.path())
            .env("DBT_PROFILES_DIR", project.path())
            .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
            .env("DO_NOT_TRACK", "1")
            .env("FEATUREDB_HOST", "127.0.0.1")
            .env("FEATUREDB_PORT", server.port.to_string())
            .env("FEATUREDB_USER", "dbt")
            .env("FEATUREDB_DBT_PACKAGE", root().join("dbt/featuredb"));
        run_session(command, &format!("dbt {}", args.join(" ")))
    };
    run(&["deps"]);
    for round in 1..=2 {
        let output = run(&["build"]);
        assert!(
            output.contains("PASS=20 WARN=0 ERROR=0 SKIP=0"),
            "dbt build round {round}:\n{output}"
        );
    }
    run(&["docs", "generate"]);
    let catalog: serde_json::Value =
        serde_json::from_slice(&std::fs::read(project.path().join("target/catalog.json")).unwrap())
            .unwrap();
    assert_eq!(catalog["errors"], serde_json::Value::Null);
    let nodes = catalog["nodes"].as_object().unwrap();
    assert_eq!(nodes.len(), 6, "{nodes:?}");
    let spend = &nodes["model.featuredb_example.customer_spend"];
    assert_eq!(spend["metadata"]["type"], "VIEW");
    assert_eq!(spend["metadata"]["comment"], "Running spend per customer");
    assert_eq!(
        spend["columns"]["spend_to_date"]["type"],
        "double precision"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = server.client().await;
        let version: i32 = client
            .query_one(
                "SELECT version FROM featuredb.feature_views WHERE name = 'customer_spend'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            version, 1,
            "re-running an unchanged model makes no new version"
        );
        let row = client
            .query_one(
                "SELECT spend_to_date FROM analytics.customer_spend WHERE customer_id = $1",
                &[&1i64],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, f64>(0), 47.25);
        let logged: i64 = client
            .query_one("SELECT count(*) FROM analytics.transactions_log", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(logged, 8, "the incremental run appended nothing twice");
        let leftovers: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_class WHERE relname LIKE '%dbt%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(leftovers, 0, "no __dbt_tmp / __dbt_backup relations remain");
    });
}

/// Apache Superset from PyPI: `superset test-db` passes, and the inspector
/// calls behind adding a dataset (SQLAlchemy 1.4, Superset's pin) read a
/// table and a feature view.
#[test]
fn superset_test_db() {
    let python = common::python_venv(
        "clients-superset-venv",
        "tests/clients/superset/requirements.txt",
    );
    let superset = python.with_file_name("superset");
    let server = TestServer::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        server
            .client()
            .await
            .batch_execute(
                "CREATE TABLE events (user_id BIGINT NOT NULL, ts TIMESTAMPTZ, amount NUMERIC(10,2));
                 CREATE ENTITY customer (user_id BIGINT);
                 CREATE FEATURE VIEW user_spend ENTITY customer TIMESTAMP ts
                   WITH (description = 'spend per user')
                   AS SELECT user_id, ts, amount FROM events;",
            )
            .await
            .unwrap();
    });
    let url = format!(
        "postgresql+psycopg2://superset@127.0.0.1:{}/featuredb",
        server.port
    );
    let dir = root().join("tests/clients/superset");
    let home = tempfile::tempdir().unwrap();
    let mut command = Command::new(&superset);
    command
        .args(["test-db", &url, "-c", "{}"])
        .env("SUPERSET_CONFIG_PATH", dir.join("superset_config.py"))
        .env("SUPERSET_HOME", home.path())
        .env("FLASK_APP", "superset");
    // test-db exits 0 even when a check fails: its verdict is in the output.
    let output = run_session(command, "superset test-db");
    assert!(
        output.contains("Connected successfully!") && output.contains("Success!"),
        "superset test-db:\n{output}"
    );
    let mut command = Command::new(&python);
    command.arg(dir.join("inspect_session.py")).arg(&url);
    let inspected = run_session(command, "Superset's inspector");
    assert_expected(&inspected, &dir.join("inspect_session.expected"));
}
