//! The real binary: the first admin made with `veche admin create-user` while the server
//! runs, accounts and meetings created over HTTP, then `kill -9` and a restart on the same
//! data directory — nothing is lost, sessions included. The same on PostgreSQL.

use crate::postgres;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Veche {
    child: Child,
    http: SocketAddr,
    log: PathBuf,
}

impl Veche {
    async fn start(data: &Path) -> Veche {
        Veche::start_with(data, &[]).await
    }

    async fn start_with(data: &Path, extra: &[&str]) -> Veche {
        let http = SocketAddr::from((
            [127, 0, 0, 1],
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
        ));
        let media = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = data.with_extension(format!("{}.log", http.port()));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_veche"))
            .arg("serve")
            .args(["--http", &http.to_string()])
            .args(["--media-port", &media.to_string()])
            // The TCP port of that number may be another test's: free ICE-TCP ports.
            .args(["--ice-tcp-port", "0"])
            .args(["--public-ip", "127.0.0.1"])
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut v = Veche { child, http, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = v.request("GET", "/healthz", None, None).await {
                return v;
            }
            assert!(
                v.child.try_wait().unwrap().is_none(),
                "veche exited:\n{}",
                std::fs::read_to_string(&v.log).unwrap_or_default()
            );
            assert!(Instant::now() < deadline, "veche did not become healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One HTTP/1.1 request over a fresh connection.
    async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(self.http).await?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.http,
            body.len()
        );
        stream.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok((status, body.to_owned()))
    }

    async fn json(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, text) = self
            .request(method, &format!("/api/v1{path}"), token, body)
            .await
            .unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, value)
    }

    /// SIGKILL: no shutdown, no checkpoint, no goodbye.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Veche {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn admin(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_veche"))
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_admin_from_the_shell_and_nothing_lost_on_kill_9() {
    let data = std::env::temp_dir().join(format!("veche-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let server = Veche::start(&data).await;

    // The first operator admin, made from a shell while the server runs.
    let out = admin(
        &data,
        &[
            "create-user",
            "--email",
            "root@example.org",
            "--password-stdin",
            "--role",
            "admin",
        ],
        Some("a long admin password\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = admin(
        &data,
        &[
            "create-user",
            "--email",
            "root@example.org",
            "--password-stdin",
        ],
        Some("another password\n"),
    );
    assert!(!out.status.success(), "duplicate account accepted");
    assert!(text(&out).contains("already exists"), "{}", text(&out));
    let out = admin(
        &data,
        &[
            "create-user",
            "--email",
            "x@example.org",
            "--password-stdin",
        ],
        None,
    );
    assert!(!out.status.success(), "empty password accepted");

    let (status, login) = server
        .json(
            "POST",
            "/auth/login",
            None,
            Some(json!({"email": "root@example.org", "password": "a long admin password"})),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(login["user"]["role"], "admin");
    let root = login["token"].as_str().unwrap().to_owned();
    let (status, users) = server.json("GET", "/admin/users", Some(&root), None).await;
    assert_eq!(status, 200, "{users}");

    // A user signs up and schedules a meeting.
    let (status, signup) = server
        .json(
            "POST",
            "/auth/signup",
            None,
            Some(
                json!({"email": "dana@example.org", "password": "dana's password", "name": "Dana"}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{signup}");
    let dana = signup["token"].as_str().unwrap().to_owned();
    let (status, meeting) = server
        .json(
            "POST",
            "/meetings",
            Some(&dana),
            Some(
                json!({"title": "Planning", "starts_at": 1_900_000_000, "duration_minutes": 30,
                "recurrence": "weekly", "passcode": "8642", "waiting_room": true}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{meeting}");
    let id = meeting["id"].as_str().unwrap().to_owned();
    let (status, _) = server.json("GET", "/admin/users", Some(&dana), None).await;
    assert_eq!(status, 403);

    server.kill_9();
    let server = Veche::start(&data).await;

    // Everything is back: the meeting, both sessions, the passwords.
    let (status, got) = server
        .json("GET", &format!("/meetings/{id}"), Some(&dana), None)
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, meeting);
    let (status, _) = server.json("GET", "/auth/me", Some(&root), None).await;
    assert_eq!(status, 200);
    let (status, _) = server
        .json(
            "POST",
            "/auth/login",
            None,
            Some(json!({"email": "dana@example.org", "password": "dana's password"})),
        )
        .await;
    assert_eq!(status, 200);

    // Promote Dana from the shell, again while the server runs; her session sees it at once.
    let out = admin(
        &data,
        &["set-role", "--email", "dana@example.org", "--role", "admin"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let (status, users) = server.json("GET", "/admin/users", Some(&dana), None).await;
    assert_eq!(status, 200);
    assert_eq!(users["users"].as_array().unwrap().len(), 2);
    let org = signup["org"]["id"].as_str().unwrap().to_owned();
    let out = admin(
        &data,
        &["set-plan", "--org", &org, "--plan", "business"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let (_, got) = server
        .json("GET", &format!("/orgs/{org}"), Some(&dana), None)
        .await;
    assert_eq!(got["org"]["plan_id"], "business");
    let out = admin(&data, &["set-plan", "--org", &org, "--plan", "gold"], None);
    assert!(!out.status.success(), "unknown plan accepted");
    let out = admin(&data, &["list-users"], None);
    assert!(text(&out).contains("dana@example.org"), "{}", text(&out));
    // The audit log has the shell's and the API's actions.
    let (_, audit) = server.json("GET", "/admin/audit", Some(&root), None).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "org.update",
            "user.update",
            "meeting.create",
            "user.signup",
            "user.create"
        ]
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

/// `serve` and `admin` on PostgreSQL: the account made from the shell signs in, a meeting
/// survives `kill -9` of the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backend_through_the_binary() {
    let pg = tokio::task::spawn_blocking(postgres::Postgres::start)
        .await
        .unwrap()
        .expect("starting PostgreSQL");
    let db = pg.new_database().expect("createdb");
    let data = std::env::temp_dir().join(format!("veche-restart-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let server = Veche::start_with(&data, &["--database", &db]).await;
    let out = admin(
        &data,
        &[
            "create-user",
            "--email",
            "pg@example.org",
            "--password-stdin",
            "--database",
            &db,
        ],
        Some("postgres password\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    let (status, login) = server
        .json(
            "POST",
            "/auth/login",
            None,
            Some(json!({"email": "pg@example.org", "password": "postgres password"})),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let token = login["token"].as_str().unwrap().to_owned();
    let (status, meeting) = server
        .json(
            "POST",
            "/meetings",
            Some(&token),
            Some(json!({"title": "On PostgreSQL"})),
        )
        .await;
    assert_eq!(status, 201, "{meeting}");
    server.kill_9();
    // Nothing went to the SQLite default in the data directory.
    assert!(!data.join("veche.db").exists());
    let server = Veche::start_with(&data, &["--database", &db]).await;
    let id = meeting["id"].as_str().unwrap();
    let (status, got) = server
        .json("GET", &format!("/meetings/{id}"), Some(&token), None)
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, meeting);
    drop(server);
    drop(pg);
    let _ = std::fs::remove_dir_all(&data);
}
