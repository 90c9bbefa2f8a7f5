//! Directory sign-in against a real OpenLDAP (`slapd`, started here with a seeded directory)
//! and the real `veche` binary: the right password signs in and makes the account in the
//! directory organisation, the admin group's members become its admins, wrong passwords are
//! counted in the login lockout, an injected filter matches nobody, a disabled or mailless
//! user is refused, an existing local account is linked (and its local password then
//! refused), and a directory that is down or silent gives a quick, specific error.

use crate::common;
use crate::slapd;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::Server;
use serde_json::{Value, json};
use slapd::Slapd;

const SUFFIX: &str = "dc=example,dc=org";

fn person(uid: &str, name: &str, mail: Option<&str>, extra: &str) -> String {
    let mail = mail.map(|m| format!("mail: {m}\n")).unwrap_or_default();
    format!(
        "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {name}\n\
         sn: {name}\ndisplayName: {name}\n{mail}{extra}userPassword: {uid}-directory-pw\n\n"
    )
}

fn seed() -> String {
    let mut ldif = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: cn=reader,{SUFFIX}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
         cn: reader\nuserPassword: reader-pw\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n"
    );
    ldif.push_str(&person(
        "alice",
        "Alice Liddell",
        Some("alice@example.org"),
        "",
    ));
    ldif.push_str(&person("bob", "Bob Builder", Some("Bob@Example.org"), ""));
    ldif.push_str(&person(
        "carol",
        "Carol Disabled",
        Some("carol@example.org"),
        "employeeType: disabled\n",
    ));
    ldif.push_str(&person("dave", "Dave Nomail", None, ""));
    ldif.push_str(&format!(
        "dn: cn=veche-admins,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: veche-admins\n\
         member: uid=alice,ou=people,{SUFFIX}\n\n\
         dn: cn=staff,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: staff\n\
         member: uid=alice,ou=people,{SUFFIX}\nmember: uid=bob,ou=people,{SUFFIX}\n\n"
    ));
    ldif
}

/// The flags of a server using `url` as its directory.
fn ldap_flags(url: &str, ca_file: Option<&str>) -> Vec<String> {
    let mut flags: Vec<String> = [
        "--ldap-url",
        url,
        "--ldap-bind-dn",
        &format!("cn=reader,{SUFFIX}"),
        "--ldap-bind-password",
        "reader-pw",
        "--ldap-base-dn",
        &format!("ou=people,{SUFFIX}"),
        "--ldap-group-base-dn",
        &format!("ou=groups,{SUFFIX}"),
        "--ldap-user-filter",
        "(&(objectClass=inetOrgPerson)(uid={username})(!(employeeType=disabled)))",
        // Written with other spacing and case than the server returns it.
        "--ldap-role",
        &format!("org-admin=CN=Veche-Admins, ou=groups, {SUFFIX}"),
        "--directory-org",
        "Example Directory",
        "--lockout-failures",
        "3",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if let Some(ca) = ca_file {
        flags.extend(["--ldap-starttls", "true", "--ldap-ca-file", ca].map(str::to_owned));
    }
    flags
}

async fn ldap_login(
    server: &Server,
    username: &str,
    password: &str,
) -> anyhow::Result<(u16, Value)> {
    let body = json!({"username": username, "password": password}).to_string();
    let (status, text) = server
        .request("POST", "/api/v1/auth/ldap", None, Some(&body))
        .await?;
    let value = serde_json::from_str(&text).with_context(|| format!("not JSON: {text:?}"))?;
    Ok((status, value))
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_users_sign_in_with_their_directory_password() -> anyhow::Result<()> {
    let slapd = Slapd::start(SUFFIX, &seed())?;
    let ca = slapd.ca_file.to_str().context("temp path")?.to_owned();
    let flags = ldap_flags(&slapd.url, Some(&ca));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start_with(&flags).await?;

    // Bob already has a local account (by email, in another case): it gets linked.
    let signup =
        json!({"email": "bob@example.org", "password": "bob's local password", "name": "Bob"});
    let (status, body) = server
        .request(
            "POST",
            "/api/v1/auth/signup",
            None,
            Some(&signup.to_string()),
        )
        .await?;
    ensure!(status == 201, "signup: {status} {body}");
    let bob_local: Value = serde_json::from_str(&body)?;

    // The sign-in page learns that the directory is there.
    let (_, config) = server.get("/api/v1/config").await?;
    let config: Value = serde_json::from_str(&config)?;
    ensure!(
        config["directory"]["ldap"]["label"] == "Directory",
        "{config}"
    );

    // Alice: first sign-in makes her account, in the directory organisation, as its admin
    // (member of veche-admins).
    let (status, alice) = ldap_login(&server, "alice", "alice-directory-pw").await?;
    ensure!(status == 200, "alice: {status} {alice}");
    ensure!(alice["user"]["email"] == "alice@example.org", "{alice}");
    ensure!(alice["user"]["name"] == "Alice Liddell", "{alice}");
    ensure!(alice["user"]["org_role"] == "admin", "{alice}");
    ensure!(alice["org"]["name"] == "Example Directory", "{alice}");
    let token = alice["token"].as_str().context("token")?;
    let (status, me) = server
        .request("GET", "/api/v1/auth/me", Some(token), None)
        .await?;
    ensure!(
        status == 200 && me.contains("alice@example.org"),
        "{status} {me}"
    );
    // Again: the same account.
    let (status, again) = ldap_login(&server, "Alice", "alice-directory-pw").await?;
    ensure!(
        status == 200 && again["user"]["id"] == alice["user"]["id"],
        "{again}"
    );
    // A directory account has no local password to guess.
    let local = json!({"email": "alice@example.org", "password": "alice-directory-pw"});
    let (status, _) = server
        .request("POST", "/api/v1/auth/login", None, Some(&local.to_string()))
        .await?;
    ensure!(
        status == 401,
        "local login of a directory account: {status}"
    );

    // Bob: linked to his local account, a member (not in veche-admins), and his local
    // password no longer works.
    let (status, bob) = ldap_login(&server, "bob", "bob-directory-pw").await?;
    ensure!(status == 200, "bob: {status} {bob}");
    ensure!(
        bob["user"]["id"] == bob_local["user"]["id"],
        "not linked: {bob}"
    );
    let local = json!({"email": "bob@example.org", "password": "bob's local password"});
    let (status, _) = server
        .request("POST", "/api/v1/auth/login", None, Some(&local.to_string()))
        .await?;
    ensure!(
        status == 401,
        "local password of a linked account: {status}"
    );

    // An injected filter matches nobody (escaped per RFC 4515), with anyone's password.
    for injected in ["*)(uid=*", "*", "alice)(|(uid=*", "al*"] {
        let (status, body) = ldap_login(&server, injected, "alice-directory-pw").await?;
        ensure!(
            status == 401 && code(&body) == "invalid_credentials",
            "{injected}: {status} {body}"
        );
    }
    // A disabled user (excluded by the filter) and an empty password are refused.
    let (status, body) = ldap_login(&server, "carol", "carol-directory-pw").await?;
    ensure!(status == 401, "disabled carol: {status} {body}");
    let (status, body) = ldap_login(&server, "dave", "").await?;
    ensure!(status == 401, "empty password: {status} {body}");
    // A user without an email cannot become an account.
    let (status, body) = ldap_login(&server, "dave", "dave-directory-pw").await?;
    ensure!(
        status == 403 && code(&body) == "directory_no_email",
        "dave: {status} {body}"
    );

    // Wrong passwords count like local logins: with --lockout-failures 3 the third locks
    // the (user, address) pair, and then even the right password is refused for a while.
    for i in 0..3 {
        let (status, body) = ldap_login(&server, "bob", "not bob's password").await?;
        ensure!(status == 401, "wrong password {i}: {status} {body}");
    }
    let (status, body) = ldap_login(&server, "bob", "bob-directory-pw").await?;
    ensure!(
        status == 429 && code(&body) == "locked_out",
        "after three wrong passwords: {status} {body}"
    );
    server.pass();
    drop(slapd);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_directory_fails_fast_and_specifically() -> anyhow::Result<()> {
    // A port that accepts connections (the kernel completes the handshake) but never
    // answers: the sign-in must give up at --ldap-timeout-ms.
    let silent = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("ldap://{}", silent.local_addr()?);
    let mut flags = ldap_flags(&url, None);
    flags.extend(["--ldap-timeout-ms", "700"].map(str::to_owned));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start_with(&flags).await?;
    let started = Instant::now();
    let (status, body) = ldap_login(&server, "alice", "alice-directory-pw").await?;
    let took = started.elapsed();
    ensure!(
        status == 503 && code(&body) == "directory_unavailable",
        "silent directory: {status} {body}"
    );
    ensure!(took < Duration::from_secs(3), "took {took:?}");
    ensure!(
        server.log().contains("no answer within 700 ms"),
        "the log names the cause"
    );
    // Nobody listening at all: refused at once, with the same error.
    drop(silent);
    let started = Instant::now();
    let (status, body) = ldap_login(&server, "alice", "alice-directory-pw").await?;
    ensure!(
        status == 503 && code(&body) == "directory_unavailable",
        "directory down: {status} {body}"
    );
    ensure!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Neither counted as a wrong password: more than --lockout-failures of them still do
    // not lock anyone out.
    for _ in 0..3 {
        let (status, _) = ldap_login(&server, "alice", "alice-directory-pw").await?;
        ensure!(status == 503, "{status}");
    }

    // A directory whose certificate is not trusted (no --ldap-ca-file) is unavailable too,
    // not silently used in the clear.
    let slapd = Slapd::start(SUFFIX, &seed())?;
    let mut flags = ldap_flags(&slapd.url, None);
    flags.extend(["--ldap-starttls", "true"].map(str::to_owned));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let untrusted = Server::start_with(&flags).await?;
    let (status, body) = ldap_login(&untrusted, "alice", "alice-directory-pw").await?;
    ensure!(
        status == 503 && code(&body) == "directory_unavailable",
        "untrusted certificate: {status} {body}"
    );
    untrusted.pass();
    server.pass();
    Ok(())
}
