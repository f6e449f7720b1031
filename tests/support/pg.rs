//! A throwaway PostgreSQL server for tests: initdb'd once into a template, copied per
//! server, started with `pg_ctl` on a loopback port and a socket in its own directory,
//! trust authentication and fsync off. It fails loudly when PostgreSQL cannot be started.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub struct PgServer {
    dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    /// Extra `-c name=value` server settings.
    options: String,
}

fn bin_dir() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    candidates.sort();
    if let Some(dir) = candidates.into_iter().rev().find(|d| d.join("initdb").exists()) {
        return dir;
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    panic!(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install the Debian package `postgresql` \
         (scripts/test.sh does this)"
    );
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root (initdb refuses root).
fn pg_command(bin: &Path, tool: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

fn chown_to_postgres(path: &Path) {
    if is_root() {
        let status =
            Command::new("chown").args(["-R", "postgres:postgres"]).arg(path).status().expect("chown");
        assert!(status.success(), "chown {} failed", path.display());
    }
}

fn check(what: &str, out: std::process::Output) {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The initdb'd template, made once per build directory under a lock.
fn template(bin: &Path) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let version = bin.parent().and_then(|p| p.file_name()).map(|s| s.to_string_lossy().into_owned());
    let template = root.join(format!("pg-template-{}", version.unwrap_or_else(|| "x".into())));
    std::fs::create_dir_all(&root).expect("target tmpdir");
    let lock = std::fs::File::create(root.join("pg-template.lock")).expect("lock file");
    lock.lock().expect("locking the template");
    if !template.join("PG_VERSION").exists() {
        let staging = root.join(format!("pg-template-tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).expect("template dir");
        // The postgres user must reach the directory through every parent.
        if is_root() {
            let mut p = staging.clone();
            while let Some(parent) = p.parent() {
                let _ = Command::new("chmod").arg("o+x").arg(parent).status();
                p = parent.to_path_buf();
            }
        }
        chown_to_postgres(&staging);
        let out = pg_command(bin, "initdb")
            .args(["-D"])
            .arg(&staging)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"])
            .output()
            .expect("running initdb");
        check("initdb", out);
        std::fs::rename(&staging, &template).expect("publishing the template");
    }
    template
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("port").port()
}

impl PgServer {
    pub fn start() -> PgServer {
        PgServer::start_with(|_| String::new())
    }

    /// Starts a server whose extra settings `options` returns, given the server's directory
    /// (where it may first write files such as certificates).
    pub fn start_with(options: impl FnOnce(&Path) -> String) -> PgServer {
        let bin = bin_dir();
        let template = template(&bin);
        let dir = tempfile::Builder::new().prefix("dynashift-pg").tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let out = Command::new("cp").arg("-a").arg(&template).arg(&data).output().expect("cp");
        check("copying the template cluster", out);
        let options = options(dir.path());
        chown_to_postgres(dir.path());
        let mut server = PgServer { dir, port: free_port(), bin, options };
        // PostgreSQL binds its port itself: when another process took the chosen port
        // meanwhile, start again on another.
        for _ in 0..5 {
            match server.try_start() {
                Ok(()) => return server,
                Err(log) if log.contains("Address already in use") => server.port = free_port(),
                Err(log) => panic!("PostgreSQL did not start:\n{log}"),
            }
        }
        panic!("PostgreSQL found its port taken five times in a row");
    }

    /// The server's own directory (socket, log, files written by `start_with`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the (stopped) server again on the same port.
    pub fn start_again(&self) {
        if let Err(log) = self.try_start() {
            panic!("PostgreSQL did not start:\n{log}");
        }
    }

    /// Starts the server on its port; the error holds pg_ctl's message and the server log.
    fn try_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=50 -c shared_buffers=128MB {}",
            self.port,
            self.dir.path().display(),
            self.options
        );
        let out = pg_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output()
            .expect("running pg_ctl start");
        if out.status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        // The next attempt appends to the same log: start it afresh.
        let _ = std::fs::remove_file(self.dir.path().join("server.log"));
        Err(format!("{}\n{log}", String::from_utf8_lossy(&out.stderr)))
    }

    /// Stops the server at once (in-flight sessions are cut).
    pub fn stop(&self) {
        let _ = pg_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-m", "immediate", "stop"])
            .output();
    }

    /// libpq-style connection string for database `db` over loopback TCP.
    pub fn url(&self, db: &str) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname={db} connect_timeout=5", self.port)
    }

    /// Runs SQL statements (simple protocol) against `db`.
    pub fn exec(&self, db: &str, sql: &str) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let (client, conn) =
                tokio_postgres::connect(&self.url(db), tokio_postgres::NoTls).await.expect("connect");
            let driver = tokio::spawn(conn);
            client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            drop(client);
            let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
        });
    }

    /// Text of the first column of every row of `sql`.
    pub fn query(&self, db: &str, sql: &str) -> Vec<Option<String>> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let (client, conn) =
                tokio_postgres::connect(&self.url(db), tokio_postgres::NoTls).await.expect("connect");
            let driver = tokio::spawn(conn);
            let rows = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            drop(client);
            let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
            rows.into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
                    _ => None,
                })
                .collect()
        })
    }

    /// A new, empty database.
    pub fn create_db(&self, name: &str) -> String {
        self.exec("postgres", &format!("CREATE DATABASE \"{name}\""));
        self.url(name)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}
