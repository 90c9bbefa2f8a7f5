//! `veche admin …`: account management from a shell, against the same database as the
//! server. Safe next to a running server: SQLite is in WAL mode with a busy timeout, and
//! PostgreSQL handles concurrent clients itself.

use std::io::BufRead;

use anyhow::{Context, bail};

use crate::api::{Clock, SystemClock};
use crate::config::{AdminArgs, AdminCommand, RoleArg, admin_database};
use crate::store::{
    NewAuditEntry, NewUser, OrgRole, Store, User, UserRole, create_user_on, set_org_plan_on,
    set_password_on, set_user_role_on,
};

fn role(r: RoleArg) -> UserRole {
    match r {
        RoleArg::Admin => UserRole::Admin,
        RoleArg::User => UserRole::User,
    }
}

/// The first line of standard input, without its line ending.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok(password)
}

/// The audit entry of a change made from the shell.
fn entry(action: &str, target: &str, org: Option<&str>, detail: String) -> NewAuditEntry {
    NewAuditEntry {
        actor_email: Some("cli".into()),
        ip: Some("local shell".into()),
        action: action.into(),
        target: target.into(),
        org_id: org.map(str::to_owned),
        detail,
        ..NewAuditEntry::default()
    }
}

pub(crate) async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let url = admin_database(&args)?;
    let store = Store::open(&url)
        .await
        .with_context(|| format!("opening the database {url}"))?;
    let result = command(&store, args.command).await;
    store.close().await;
    result
}

async fn command(store: &Store, command: AdminCommand) -> anyhow::Result<()> {
    let now = SystemClock.now();
    match command {
        AdminCommand::CreateUser {
            email,
            name,
            password_stdin: _,
            role: r,
            org,
        } => {
            let password = read_password()?;
            let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or("").to_owned());
            let hashed = store
                .hash_new_user(NewUser {
                    email,
                    name,
                    password,
                    role: role(r),
                    org_role: if org.is_some() {
                        OrgRole::Member
                    } else {
                        OrgRole::Admin
                    },
                    org_id: org,
                    org_name: None,
                })
                .await?;
            let user = store
                .audited(
                    now,
                    async |c| create_user_on(c, hashed, now).await,
                    |user: &User| {
                        let detail = format!("{} as {}", user.email, user.role.as_str());
                        entry("user.create", &user.id, Some(&user.org_id), detail)
                    },
                )
                .await?;
            println!(
                "created {} ({}), role {}, organisation {}",
                user.email,
                user.id,
                user.role.as_str(),
                user.org_id
            );
        }
        AdminCommand::ListUsers => {
            println!(
                "{:<36} {:<6} {:<7} {:<16} id",
                "email", "role", "org", "org id"
            );
            for u in store.list_users(None).await? {
                println!(
                    "{:<36} {:<6} {:<7} {:<16} {}",
                    u.email,
                    u.role.as_str(),
                    u.org_role.as_str(),
                    u.org_id,
                    u.id
                );
            }
        }
        AdminCommand::SetRole { email, role: r } => {
            let user = store
                .user_by_email(&email)
                .await?
                .with_context(|| format!("no account {email}"))?;
            store
                .audited(
                    now,
                    async |c| set_user_role_on(c, &user.id, role(r)).await,
                    |_| {
                        let detail = format!("role={}", role(r).as_str());
                        entry("user.update", &user.id, Some(&user.org_id), detail)
                    },
                )
                .await?;
            println!("{} is now {}", user.email, role(r).as_str());
        }
        AdminCommand::SetPlan { org, plan } => {
            store
                .audited(
                    now,
                    async |c| set_org_plan_on(c, &org, &plan).await,
                    |_| entry("org.update", &org, Some(&org), format!("plan={plan}")),
                )
                .await?;
            println!("organisation {org} is now on the {plan} plan");
        }
        AdminCommand::SetPassword { email, .. } => {
            let user = store
                .user_by_email(&email)
                .await?
                .with_context(|| format!("no account {email}"))?;
            let password = read_password()?;
            let hash = store.hash_password(&password).await?;
            store
                .audited(
                    now,
                    async |c| set_password_on(c, &user.id, &hash).await,
                    |_| {
                        entry(
                            "user.password_reset",
                            &user.id,
                            Some(&user.org_id),
                            String::new(),
                        )
                    },
                )
                .await?;
            println!("password of {} changed; its sessions are ended", user.email);
        }
    }
    Ok(())
}
