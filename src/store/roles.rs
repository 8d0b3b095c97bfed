//! Database roles: the grants that let the runtime role (what `serve` connects as) do its
//! work and nothing more, and the checks `serve` makes on the role it runs as.
//!
//! Two roles: the owner owns the schema and runs migrations; the runtime role reads and
//! writes rows. Grants are generic (every table and sequence in the schema, and default
//! privileges for the ones later migrations add), with two exceptions: `audit_events` is
//! insert and select only, and `_sqlx_migrations` is select only. Not being the owner, the
//! runtime role can ALTER, DROP or TRUNCATE nothing and cannot disable triggers.

use sqlx::{PgExecutor, PgPool};

use super::StoreResult;

/// The schema migrations create their tables in.
const SCHEMA: &str = "public";

/// A role name as `db grant` accepts it: a plain lower-case SQL identifier, so it can be
/// printed and pasted into psql without quoting surprises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid role name: use 1 to 63 lower-case letters, digits and underscores, \
     starting with a letter or underscore"
)]
pub struct InvalidRoleName;

impl RoleName {
    pub fn parse(name: &str) -> Result<Self, InvalidRoleName> {
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if first_ok && rest_ok && name.len() <= 63 {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidRoleName)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Quoted as an identifier (the name is already plain; the quotes make that certain).
    fn ident(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl std::fmt::Display for RoleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The statements that grant `runtime` what it needs. Default privileges are set for the
/// tables `owner` creates later (None: for the role that runs the statements, which must
/// then be the owner).
pub fn grant_statements(runtime: &RoleName, owner: Option<&RoleName>) -> Vec<String> {
    let r = runtime.ident();
    let for_owner = owner
        .map(|o| format!(" for role {}", o.ident()))
        .unwrap_or_default();
    vec![
        format!("grant usage on schema {SCHEMA} to {r}"),
        format!("grant select, insert, update, delete on all tables in schema {SCHEMA} to {r}"),
        format!("grant usage, select on all sequences in schema {SCHEMA} to {r}"),
        // The audit trail is append-only: insert and read, never change or remove.
        format!("revoke update, delete, truncate, references, trigger on {SCHEMA}.audit_events from {r}"),
        // Only the owner applies migrations; the runtime role may see which are applied.
        format!("revoke insert, update, delete, truncate on {SCHEMA}._sqlx_migrations from {r}"),
        format!(
            "alter default privileges{for_owner} in schema {SCHEMA} \
             grant select, insert, update, delete on tables to {r}"
        ),
        format!(
            "alter default privileges{for_owner} in schema {SCHEMA} \
             grant usage, select on sequences to {r}"
        ),
    ]
}

/// The role that owns the tables (the one migrations ran as), or None before migrations.
pub async fn table_owner(db: impl PgExecutor<'_>) -> StoreResult<Option<String>> {
    Ok(sqlx::query_scalar(
        "select pg_get_userbyid(relowner)::text from pg_class
         where oid = to_regclass('public.audit_events')",
    )
    .fetch_optional(db)
    .await?)
}

/// Applies the grants in one transaction, with default privileges for the tables' owner.
pub async fn apply_grants(pool: &PgPool, runtime: &RoleName) -> StoreResult<Vec<String>> {
    let mut tx = pool.begin().await?;
    let owner = table_owner(&mut *tx)
        .await?
        .and_then(|o| RoleName::parse(&o).ok());
    let statements = grant_statements(runtime, owner.as_ref());
    for sql in &statements {
        sqlx::query(sql).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(statements)
}

/// Creates a login role unless it exists (dev mode and tests; race-safe across processes).
/// The password is only for servers that ask for one; dev and test clusters trust local
/// connections.
pub async fn ensure_login_role(
    db: impl PgExecutor<'_>,
    role: &RoleName,
    password: &str,
) -> StoreResult<()> {
    let password = password.replace('\'', "''");
    sqlx::query(&format!(
        "do $$ begin
           create role {} login password '{password}';
         exception when duplicate_object or unique_violation then null;
         end $$",
        role.ident()
    ))
    .execute(db)
    .await?;
    Ok(())
}

/// Hands a database and every table and sequence in its schema to `owner` (dev mode adopts
/// a database an earlier version created as the superuser).
pub async fn adopt_schema(pool: &PgPool, owner: &RoleName) -> StoreResult<()> {
    let o = owner.ident();
    sqlx::query(&format!(
        "do $$ declare r record; begin
           execute format('alter database %I owner to {o}', current_database());
           execute 'alter schema {SCHEMA} owner to {o}';
           for r in select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
                    where n.nspname = '{SCHEMA}' and c.relkind in ('r', 'p')
                      and pg_get_userbyid(c.relowner) <> '{owner}'
           loop
             execute format('alter table {SCHEMA}.%I owner to {o}', r.relname);
           end loop;
         end $$"
    ))
    .execute(pool)
    .await?;
    Ok(())
}

/// What the connected role may do beyond its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRole {
    pub name: String,
    pub superuser: bool,
    /// Owns the tables (or is a member of the role that does): may ALTER, DROP, TRUNCATE
    /// and disable the audit trail's triggers.
    pub owns_tables: bool,
}

pub async fn session_role(db: impl PgExecutor<'_>) -> StoreResult<SessionRole> {
    let (name, superuser, owns_tables): (String, bool, Option<bool>) = sqlx::query_as(
        "select current_user::text, r.rolsuper,
                (select pg_has_role(current_user, c.relowner, 'MEMBER') from pg_class c
                 where c.oid = to_regclass('public.audit_events'))
         from pg_roles r where r.rolname = current_user",
    )
    .fetch_one(db)
    .await?;
    Ok(SessionRole {
        name,
        superuser,
        owns_tables: owns_tables.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_plain_identifiers() {
        for ok in ["tenant_vault_runtime", "_x", "a1"] {
            assert!(RoleName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Runtime",
            "1abc",
            "a-b",
            "a\"; drop table x; --",
            "a b",
            &"a".repeat(64),
        ] {
            assert_eq!(RoleName::parse(bad), Err(InvalidRoleName), "{bad}");
        }
    }
}
