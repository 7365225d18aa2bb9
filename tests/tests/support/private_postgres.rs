//! A PostgreSQL cluster of a test's own on a free port: tests that restart PostgreSQL (or
//! change its settings) use one so that no other suite running beside them loses its server.
//! The server programs run as the `postgres` user when the tests run as root (initdb and
//! postgres refuse root).

#[path = "free_port.rs"]
mod free_port;
pub use free_port::free_port;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the PostgreSQL server programs are: `WAYBILL_PG_BIN`, or the newest Debian
/// `/usr/lib/postgresql/<major>/bin` (15 on these machines).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WAYBILL_PG_BIN") {
        return PathBuf::from(dir);
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists())
        .max_by_key(|(major, _)| *major);
    newest
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// A cluster folder under the temporary directory, empty and owned by `postgres`.
pub fn cluster_dir(kind: &str) -> PathBuf {
    let initdb = bin_dir().join("initdb");
    assert!(
        initdb.exists(),
        "{} is missing: this test starts a PostgreSQL cluster of its own and needs the server \
         programs (install the Debian package postgresql-15, e.g. with `scripts/brokers \
         install postgres`, or point WAYBILL_PG_BIN at the bin directory)",
        initdb.display()
    );
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "waybill-pg-{kind}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    give_to_postgres(&dir);
    dir
}

/// `initdb` of `dir/data` with trust authentication for user `postgres`.
pub fn initdb(dir: &Path) {
    run_as_postgres(
        Command::new(bin_dir().join("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]),
        "initdb",
    );
}

/// The argument list that runs `pg_ctl` on the cluster in `dir` with `args`, as `postgres`.
pub fn pg_ctl(dir: &Path, args: &[&str]) -> Vec<String> {
    let mut argv = Vec::new();
    if is_root() {
        argv.extend(["runuser", "-u", "postgres", "--"].map(String::from));
    }
    argv.push(bin_dir().join("pg_ctl").display().to_string());
    argv.push("-D".into());
    argv.push(dir.join("data").display().to_string());
    argv.push("-l".into());
    argv.push(dir.join("server.log").display().to_string());
    argv.extend(args.iter().map(|a| a.to_string()));
    argv
}

/// Runs an argument list from [`pg_ctl`]; panics with its output when it fails.
pub fn run_pg_ctl(argv: &[String], what: &str) {
    let output = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir("/")
        .output()
        .expect("run pg_ctl");
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Makes `path` the `postgres` user's when running as root (initdb refuses root).
pub fn give_to_postgres(path: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(path)
            .status()
            .expect("chown");
        assert!(status.success(), "chown postgres {}", path.display());
    }
}

/// Runs `command` as `postgres` (when root), from `/`; its output.
pub fn run_as_postgres_status(command: &mut Command) -> std::process::Output {
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
    let mut actual = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    };
    actual
        .current_dir("/")
        .output()
        .expect("run a PostgreSQL program")
}

/// As [`run_as_postgres_status`]; panics with the output when it fails.
pub fn run_as_postgres(command: &mut Command, what: &str) {
    let output = run_as_postgres_status(command);
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A running cluster with trust authentication on 127.0.0.1 and no TLS; stopped with
/// `pg_ctl stop -m immediate` and deleted on drop.
pub struct PrivatePostgres {
    dir: PathBuf,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
}

impl PrivatePostgres {
    /// initdb, settings, start.
    pub fn start() -> Self {
        let dir = cluster_dir("private");
        initdb(&dir);
        let port = free_port();
        let conf = dir.join("data").join("postgresql.conf");
        let mut settings = std::fs::read_to_string(&conf).unwrap();
        settings.push_str(&format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nmax_connections = 100\nshared_buffers = 32MB\n",
            dir.display()
        ));
        std::fs::write(&conf, settings).unwrap();
        run_pg_ctl(&pg_ctl(&dir, &["-w", "-t", "60", "start"]), "pg_ctl start");
        Self { dir, port }
    }

    /// The URL of database `postgres` as user `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The command that restarts it at once (`-m immediate`: no shutdown checkpoint, as a
    /// crash), waiting until it accepts connections again.
    pub fn restart_immediately(&self) -> Vec<String> {
        pg_ctl(&self.dir, &["-m", "immediate", "-w", "-t", "60", "restart"])
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let stop = pg_ctl(&self.dir, &["-m", "immediate", "-w", "stop"]);
        let _ = Command::new(&stop[0])
            .args(&stop[1..])
            .current_dir("/")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
