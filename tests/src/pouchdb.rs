//! pouchdb-server (installed by scripts/install into tests/pouchdb): a real CouchDB-API server, as a
//! child process, the proof that what runs on the embedded document store runs on CouchDB.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running pouchdb-server (in memory), killed when dropped.
#[derive(Debug)]
pub struct PouchDb {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for PouchDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts pouchdb-server on a free loopback port and makes `admin` with `password` its admin (it
/// starts open to everyone).
pub async fn start(password: &str) -> anyhow::Result<PouchDb> {
    let bin = crate::workspace_root().join("tests/pouchdb/node_modules/.bin/pouchdb-server");
    if !bin.exists() {
        bail!(
            "{} is missing: scripts/install installs pouchdb-server",
            bin.display()
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(&bin)
        .args([
            "--port",
            &port.to_string(),
            "--host",
            "127.0.0.1",
            "--in-memory",
        ])
        .current_dir(crate::temp_dir("pouchdb"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start pouchdb-server")?;
    let server = PouchDb {
        child,
        addr: format!("127.0.0.1:{port}").parse()?,
    };
    let started = Instant::now();
    while crate::get(server.addr, "/").await.is_err() {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("pouchdb-server did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = crate::send(
        server.addr,
        "PUT",
        "/_config/admins/admin",
        format!("\"{password}\""),
    )
    .await?;
    if reply.status != 200 {
        bail!(
            "pouchdb-server refused the admin: {} {}",
            reply.status,
            reply.text()
        );
    }
    Ok(server)
}
