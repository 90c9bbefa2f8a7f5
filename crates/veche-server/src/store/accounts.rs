//! Users, their organisation, sessions and failed-attempt lockouts.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, StoreResult, row_id};
use crate::auth;

/// Operator-wide role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    /// Runs the service: plans, every organisation, upgrade requests, the whole audit log.
    Admin,
    User,
}

impl UserRole {
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::Admin => "admin",
            UserRole::User => "user",
        }
    }
    pub fn parse(s: &str) -> Option<UserRole> {
        match s {
            "admin" => Some(UserRole::Admin),
            "user" => Some(UserRole::User),
            _ => None,
        }
    }
}

/// Role inside the user's organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgRole {
    /// Manages the organisation's members, meetings, plan requests; sees its usage and audit.
    Admin,
    Member,
}

impl OrgRole {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Admin => "admin",
            OrgRole::Member => "member",
        }
    }
    pub fn parse(s: &str) -> Option<OrgRole> {
        match s {
            "admin" => Some(OrgRole::Admin),
            "member" => Some(OrgRole::Member),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: UserRole,
    pub org_id: String,
    pub org_role: OrgRole,
    pub created_at: i64,
}

impl User {
    pub fn is_operator(&self) -> bool {
        self.role == UserRole::Admin
    }
    /// Administers `org_id`: its own org admin, or the operator.
    pub fn administers(&self, org_id: &str) -> bool {
        self.is_operator() || (self.org_id == org_id && self.org_role == OrgRole::Admin)
    }
}

/// A user to create. Without `org_id` a new organisation (named `org_name`, on the free plan)
/// is created with the user as its admin — what self-service sign-up does.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub password: String,
    pub role: UserRole,
    pub org_id: Option<String>,
    pub org_name: Option<String>,
    pub org_role: OrgRole,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub csrf_token: String,
    pub expires_at: i64,
}

pub(crate) const MIN_PASSWORD_CHARS: usize = 8;
pub(crate) const MAX_PASSWORD_CHARS: usize = 1024;
/// Longest display name of a user or organisation, in characters.
pub(crate) const MAX_NAME_CHARS: usize = 100;
/// Longest email address (RFC 5321's limit on a forward path), in bytes.
pub(crate) const MAX_EMAIL_BYTES: usize = 254;

pub(super) const USER_COLUMNS: &str = "id, email, name, role, org_id, org_role, created_at";

pub(crate) fn normalize_email(email: &str) -> StoreResult<String> {
    let email = email.trim();
    // Checked first, so an oversized value is neither copied nor echoed in the error.
    if email.len() > MAX_EMAIL_BYTES {
        return Err(StoreError::Invalid {
            field: "email",
            message: format!("must have at most {MAX_EMAIL_BYTES} bytes"),
        });
    }
    let email = email.to_lowercase();
    let valid = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.starts_with('.')
    }) && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(StoreError::Invalid {
            field: "email",
            message: format!("{email:?} is not an email address"),
        })
    }
}

pub(crate) fn check_password(password: &str) -> StoreResult<()> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(StoreError::Invalid {
            field: "password",
            message: format!("must have at least {MIN_PASSWORD_CHARS} characters"),
        });
    }
    if n > MAX_PASSWORD_CHARS {
        return Err(StoreError::Invalid {
            field: "password",
            message: format!("must have at most {MAX_PASSWORD_CHARS} characters"),
        });
    }
    Ok(())
}

/// The fields of a [`NewUser`] after validation.
struct Checked {
    email: String,
    name: String,
    org_name: Option<String>,
}

/// Every field of a new account within its limits — checked by [`Store::create_user`],
/// and by sign-up before it counts anything.
pub(crate) fn check_new_user(new: &NewUser) -> StoreResult<()> {
    check_new_user_fields(new).map(|_| ())
}

fn check_new_user_fields(new: &NewUser) -> StoreResult<Checked> {
    let email = normalize_email(&new.email)?;
    check_password(&new.password)?;
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(StoreError::Invalid {
            field: "name",
            message: format!("must have 1 to {MAX_NAME_CHARS} characters"),
        });
    }
    let org_name = match new.org_name.as_deref().map(str::trim) {
        Some(n) if n.is_empty() || n.chars().count() > MAX_NAME_CHARS => {
            return Err(StoreError::Invalid {
                field: "org_name",
                message: format!("must have 1 to {MAX_NAME_CHARS} characters"),
            });
        }
        other => other.map(str::to_owned),
    };
    Ok(Checked {
        email,
        name: name.to_owned(),
        org_name,
    })
}

pub(super) fn user_from_row(row: &AnyRow) -> StoreResult<User> {
    let role: String = row.try_get("role")?;
    let org_role: String = row.try_get("org_role")?;
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        // Only this module writes these columns, so an unknown value means a corrupt row.
        role: UserRole::parse(&role).ok_or(StoreError::Invalid {
            field: "role",
            message: format!("stored role {role:?}"),
        })?,
        org_id: row.try_get("org_id")?,
        org_role: OrgRole::parse(&org_role).ok_or(StoreError::Invalid {
            field: "org_role",
            message: format!("stored org role {org_role:?}"),
        })?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

/// A new organisation on the free plan; its id.
pub(super) async fn insert_org(
    conn: &mut sqlx::AnyConnection,
    name: &str,
    now: i64,
) -> StoreResult<String> {
    let org_id = row_id();
    sqlx::query("INSERT INTO orgs (id, name, plan_id, created_at) VALUES ($1, $2, 'free', $3)")
        .bind(&org_id)
        .bind(name)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(org_id)
}

/// Inserts `user` with `password_hash` (a PHC string, or [`NO_PASSWORD`]).
pub(super) async fn insert_user(
    conn: &mut sqlx::AnyConnection,
    user: &User,
    password_hash: &str,
) -> StoreResult<()> {
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, role, org_id, org_role, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&user.id)
    .bind(&user.email)
    .bind(&user.name)
    .bind(password_hash)
    .bind(user.role.as_str())
    .bind(&user.org_id)
    .bind(user.org_role.as_str())
    .bind(user.created_at)
    .execute(conn)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict("account")),
        Err(e) if is_foreign_key_violation(&e) => Err(StoreError::NotFound("organisation")),
        Err(e) => Err(e.into()),
    }
}

/// The password hash of an account made by directory sign-in: no PHC string, so no
/// password verifies against it (checked before any hashing, at the cost of a dummy one).
pub(super) const NO_PASSWORD: &str = "!directory";

impl Store {
    pub async fn create_user(&self, new: NewUser, now: i64) -> StoreResult<User> {
        let new = self.hash_new_user(new).await?;
        let mut tx = self.pool.begin().await?;
        let user = create_user_on(&mut tx, new, now).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Checks a new account's fields and hashes its password (slow, so before any
    /// transaction), for [`create_user_on`].
    pub async fn hash_new_user(&self, new: NewUser) -> StoreResult<HashedNewUser> {
        let checked = check_new_user_fields(&new)?;
        let hash = self.hasher.hash(&new.password).await?;
        Ok(HashedNewUser { new, checked, hash })
    }

    pub async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let Ok(email) = normalize_email(email) else {
            return Ok(None);
        };
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email = $1"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Every user, or those of one organisation, oldest first.
    pub async fn list_users(&self, org_id: Option<&str>) -> StoreResult<Vec<User>> {
        let rows =
            match org_id {
                Some(org) => sqlx::query(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE org_id = $1 ORDER BY created_at, email"
                ))
                .bind(org)
                .fetch_all(&self.pool)
                .await?,
                None => {
                    sqlx::query(&format!(
                        "SELECT {USER_COLUMNS} FROM users ORDER BY created_at, email"
                    ))
                    .fetch_all(&self.pool)
                    .await?
                }
            };
        rows.iter().map(user_from_row).collect()
    }

    pub async fn set_user_role(&self, user_id: &str, role: UserRole) -> StoreResult<()> {
        set_user_role_on(&mut *self.pool.acquire().await?, user_id, role).await
    }

    pub async fn set_org_role(&self, user_id: &str, role: OrgRole) -> StoreResult<()> {
        set_org_role_on(&mut *self.pool.acquire().await?, user_id, role).await
    }

    /// Sets a new password and ends every session of the user (a changed password should
    /// lock out whoever had the old one).
    pub async fn set_password(&self, user_id: &str, password: &str) -> StoreResult<()> {
        let hash = self.hash_password(password).await?;
        let mut tx = self.pool.begin().await?;
        set_password_on(&mut tx, user_id, &hash).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Checks a new password and hashes it (slow, so before any transaction), for
    /// [`set_password_on`].
    pub async fn hash_password(&self, password: &str) -> StoreResult<String> {
        check_password(password)?;
        Ok(self.hasher.hash(password).await?)
    }

    /// The user if `password` is theirs. An unknown email costs the same hashing time as a
    /// wrong password, so timing does not reveal which accounts exist.
    pub async fn check_login(&self, email: &str, password: &str) -> StoreResult<Option<User>> {
        self.check_local_login(email, password, true).await
    }

    /// [`Store::check_login`], where an account linked to a directory identity verifies
    /// only if `linked_may_use_password`. An account made by directory sign-in has no local
    /// password at all. Both cost a dummy verification, like an unknown email.
    pub async fn check_local_login(
        &self,
        email: &str,
        password: &str,
        linked_may_use_password: bool,
    ) -> StoreResult<Option<User>> {
        let Ok(email) = normalize_email(email) else {
            self.hasher.verify_dummy(password).await?;
            return Ok(None);
        };
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, password_hash, \
             (SELECT COUNT(*) FROM directory_links d WHERE d.user_id = users.id) AS links \
             FROM users WHERE email = $1"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            self.hasher.verify_dummy(password).await?;
            return Ok(None);
        };
        let hash: String = row.try_get("password_hash")?;
        let links: i64 = row.try_get("links")?;
        if hash == NO_PASSWORD || (links > 0 && !linked_may_use_password) {
            self.hasher.verify_dummy(password).await?;
            return Ok(None);
        }
        if self.hasher.verify(password, &hash).await? {
            Ok(Some(user_from_row(&row)?))
        } else {
            Ok(None)
        }
    }

    /// Starts a session; returns the bearer token (only its digest is stored) and the CSRF
    /// token the browser must echo on state-changing requests.
    pub async fn create_session(
        &self,
        user_id: &str,
        now: i64,
        ttl_secs: i64,
    ) -> StoreResult<(String, Session)> {
        let token = auth::new_token();
        let session = Session {
            user_id: user_id.to_owned(),
            csrf_token: auth::new_token(),
            expires_at: now + ttl_secs,
        };
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(auth::token_digest(&token))
        .bind(user_id)
        .bind(&session.csrf_token)
        .bind(now)
        .bind(session.expires_at)
        .execute(&self.pool)
        .await?;
        Ok((token, session))
    }

    /// The live session for `token` and its user; expired sessions are deleted on sight.
    pub async fn session(&self, token: &str, now: i64) -> StoreResult<Option<(User, Session)>> {
        let digest = auth::token_digest(token);
        let row = sqlx::query(&format!(
            "SELECT {cols}, s.csrf_token, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1",
            cols = USER_COLUMNS
                .split(", ")
                .map(|c| format!("u.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(&digest)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let expires_at: i64 = row.try_get("expires_at")?;
        if expires_at <= now {
            sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                .bind(&digest)
                .execute(&self.pool)
                .await?;
            return Ok(None);
        }
        let user = user_from_row(&row)?;
        let session = Session {
            user_id: user.id.clone(),
            csrf_token: row.try_get("csrf_token")?,
            expires_at,
        };
        Ok(Some((user, session)))
    }

    pub async fn delete_session(&self, token: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(auth::token_digest(token))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// A new account whose fields are checked and password hashed ([`Store::hash_new_user`]).
pub struct HashedNewUser {
    new: NewUser,
    checked: Checked,
    hash: String,
}

/// Makes the account (and its organisation, if it has none) on `conn` (run it in a
/// transaction).
pub(crate) async fn create_user_on(
    conn: &mut sqlx::AnyConnection,
    new: HashedNewUser,
    now: i64,
) -> StoreResult<User> {
    let HashedNewUser {
        new,
        checked: Checked {
            email,
            name,
            org_name,
        },
        hash,
    } = new;
    let name = name.as_str();
    let (org_id, org_role) = match new.org_id {
        // No existence check first: a read before the write would make SQLite's
        // transaction upgrade its lock, which fails at once (without the busy timeout)
        // when another process writes. The foreign key tells a missing organisation.
        Some(org_id) => (org_id, new.org_role),
        None => {
            let org_name = org_name.unwrap_or_else(|| format!("{name}'s organisation"));
            (insert_org(conn, &org_name, now).await?, OrgRole::Admin)
        }
    };
    let user = User {
        id: row_id(),
        email,
        name: name.to_owned(),
        role: new.role,
        org_id,
        org_role,
        created_at: now,
    };
    insert_user(conn, &user, &hash).await?;
    Ok(user)
}

pub(crate) async fn set_user_role_on(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    role: UserRole,
) -> StoreResult<()> {
    set_user_column(
        conn,
        "UPDATE users SET role = $1 WHERE id = $2",
        user_id,
        role.as_str(),
    )
    .await
}

pub(crate) async fn set_org_role_on(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    role: OrgRole,
) -> StoreResult<()> {
    let update = "UPDATE users SET org_role = $1 WHERE id = $2";
    set_user_column(conn, update, user_id, role.as_str()).await
}

/// Runs `update` (binding `value`, then `user_id`) on one user; not found if there is none.
async fn set_user_column(
    conn: &mut sqlx::AnyConnection,
    update: &'static str,
    user_id: &str,
    value: &str,
) -> StoreResult<()> {
    let done = sqlx::query(update)
        .bind(value)
        .bind(user_id)
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("user"));
    }
    Ok(())
}

/// Sets the password hash `hash` ([`Store::hash_password`]) and ends every session of the
/// user, on `conn` (run it in a transaction).
pub(crate) async fn set_password_on(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    hash: &str,
) -> StoreResult<()> {
    let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("user"));
    }
    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}
