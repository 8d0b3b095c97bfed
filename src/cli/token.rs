//! `tenant-vault token create|create-service|list|revoke|rotate`.

use clap::Subcommand;

use super::{default_service, VaultArgs};
use crate::app::App;
use crate::config::TokenArgs;
use crate::domain::{TenantSlug, TokenId};
use crate::service::tokens::{IssuedToken, NewTokenKind, TokenInfo, TokenOwner, TokenSpec};
use crate::service::{RequestContext, Scopes, TenantSet};

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create an admin or tenant token and print it once. Only its hash and a keyed
    /// verifier are stored.
    Create {
        /// A token for this tenant's secrets.
        #[arg(
            long,
            value_name = "SLUG",
            conflicts_with = "admin",
            required_unless_present = "admin"
        )]
        tenant: Option<String>,
        /// An admin token (manages tenants and tokens; cannot read secrets).
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        scope: ScopeArgs,
        #[command(flatten)]
        common: IssueArgs,
    },
    /// Create a service token: one token that reads (and, with secrets:write, writes)
    /// secrets of several tenants, e.g.
    /// `token create-service --tenants acme,globex --scopes secrets:read --pattern 'STRIPE_*'`.
    CreateService {
        /// The tenants it reaches, comma-separated slugs.
        #[arg(
            long,
            value_name = "SLUG,...",
            value_delimiter = ',',
            conflicts_with = "all_tenants",
            required_unless_present = "all_tenants"
        )]
        tenants: Vec<String>,
        /// Reach every tenant, present and future.
        #[arg(long)]
        all_tenants: bool,
        #[command(flatten)]
        scope: ScopeArgs,
        #[command(flatten)]
        common: IssueArgs,
    },
    /// List tokens (never their secrets): a tenant's with --tenant, else the admin and
    /// service tokens. Shows id, kind, scopes, created, expires, last used and revoked.
    List {
        /// List this tenant's tokens.
        #[arg(long, value_name = "SLUG")]
        tenant: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The master key unwraps the audit key that chains the trail's rows.
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Revoke a token by id, at once, on every running replica.
    Revoke {
        /// The token id (as `token list` shows it).
        id: String,
        /// The master key unwraps the audit key that chains the trail's rows.
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Issue a new token like this one (same kind, tenant and scopes) and print it once;
    /// the old token stays valid for the grace period only.
    Rotate {
        /// The token id (as `token list` shows it).
        id: String,
        /// Seconds the old token keeps working (0: stops at once).
        #[arg(long, value_name = "SECS", default_value_t = crate::service::tokens::DEFAULT_ROTATION_GRACE_SECS)]
        grace_secs: u64,
        #[command(flatten)]
        common: IssueArgs,
    },
}

/// What a tenant or service token may do.
#[derive(clap::Args, Debug)]
pub struct ScopeArgs {
    /// Comma-separated scopes: secrets:read, secrets:write (default both). Ignored for
    /// admin tokens.
    #[arg(
        long,
        value_name = "SCOPE,...",
        value_delimiter = ',',
        default_value = "secrets:read,secrets:write"
    )]
    scopes: Vec<String>,
    /// Only secret keys matching this pattern: a key with an optional `*` at its start, its
    /// end or both, e.g. 'STRIPE_*'.
    #[arg(long, value_name = "GLOB")]
    pattern: Option<String>,
}

/// What issuing a token needs: a note, its life, the database and the master key (the
/// token's verifier key is wrapped by it).
#[derive(clap::Args, Debug)]
pub struct IssueArgs {
    /// A note stored with the token, e.g. who it is for.
    #[arg(long)]
    description: Option<String>,
    /// Expire the token after this many seconds (default: --token-default-ttl-secs).
    #[arg(long, value_name = "SECS")]
    ttl_secs: Option<u64>,
    #[command(flatten)]
    tokens: TokenArgs,
    #[command(flatten)]
    vault: VaultArgs,
}

fn slug(raw: &str) -> anyhow::Result<TenantSlug> {
    TenantSlug::parse(raw).map_err(|e| anyhow::anyhow!("invalid slug {raw:?}: {e}"))
}

fn token_id(raw: &str) -> anyhow::Result<TokenId> {
    uuid::Uuid::parse_str(raw.trim())
        .map(TokenId)
        .map_err(|_| anyhow::anyhow!("invalid token id {raw:?}: expected a UUID"))
}

fn scopes(args: &ScopeArgs) -> anyhow::Result<Scopes> {
    Scopes::parse(&args.scopes, args.pattern.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The vault with the master key loaded (issuing needs the token key).
async fn keyed_app(common: &IssueArgs) -> anyhow::Result<App> {
    common.tokens.check()?;
    let mut service = default_service();
    service.tokens = common.tokens.clone();
    common.vault.open_with(&service).await
}

async fn issue(common: IssueArgs, kind: NewTokenKind, scopes: Scopes) -> anyhow::Result<()> {
    let app = keyed_app(&common).await?;
    let result = app
        .vault
        .issue_token(
            &RequestContext::cli(),
            TokenSpec {
                kind,
                scopes,
                description: common.description,
                ttl_secs: common.ttl_secs,
            },
        )
        .await;
    app.shutdown().await;
    print_issued(&result.map_err(|e| anyhow::anyhow!("{e}"))?);
    Ok(())
}

fn print_issued(issued: &IssuedToken) {
    println!("{}", issued.text.as_str());
    let expires = issued
        .expires_at
        .map_or("never".to_owned(), |t| t.to_rfc3339());
    eprintln!(
        "token {} created (expires {expires}); it is shown only this once",
        issued.id
    );
}

pub async fn run(cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Create {
            tenant,
            admin: _,
            scope,
            common,
        } => {
            let kind = match tenant {
                Some(s) => NewTokenKind::Tenant(slug(&s)?),
                None => NewTokenKind::Admin,
            };
            let scopes = scopes(&scope)?;
            issue(common, kind, scopes).await
        }
        TokenCmd::CreateService {
            tenants,
            all_tenants,
            scope,
            common,
        } => {
            let set = if all_tenants {
                TenantSet::All
            } else {
                TenantSet::Only(tenants.iter().map(|s| slug(s)).collect::<Result<_, _>>()?)
            };
            let scopes = scopes(&scope)?;
            issue(common, NewTokenKind::Service(set), scopes).await
        }
        TokenCmd::List {
            tenant,
            json,
            vault,
        } => {
            let owner = match tenant {
                Some(s) => TokenOwner::Tenant(slug(&s)?),
                None => TokenOwner::Global,
            };
            let app = vault.open().await?;
            let result = app.vault.list_tokens(&RequestContext::cli(), &owner).await;
            app.shutdown().await;
            let tokens = result.map_err(|e| anyhow::anyhow!("{e}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
            } else {
                print_table(&tokens);
            }
            Ok(())
        }
        TokenCmd::Revoke { id, vault } => {
            let id = token_id(&id)?;
            let app = vault.open().await?;
            let result = app.vault.revoke_token(&RequestContext::cli(), id).await;
            app.shutdown().await;
            result.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("revoked token {id}");
            Ok(())
        }
        TokenCmd::Rotate {
            id,
            grace_secs,
            common,
        } => {
            let id = token_id(&id)?;
            let app = keyed_app(&common).await?;
            let result = app
                .vault
                .rotate_token(
                    &RequestContext::cli(),
                    id,
                    Some(grace_secs),
                    common.ttl_secs,
                )
                .await;
            app.shutdown().await;
            let issued = result.map_err(|e| anyhow::anyhow!("{e}"))?;
            print_issued(&issued);
            eprintln!("the old token {id} stops working in {grace_secs} s");
            Ok(())
        }
    }
}

fn print_table(tokens: &[TokenInfo]) {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or("-".to_owned(), |t| t.format("%Y-%m-%d %H:%M").to_string())
    };
    println!(
        "{:<36}  {:<7}  {:<20}  {:<27}  {:<10}  {:<16}  {:<16}  {:<16}  {:<16}  DESCRIPTION",
        "ID",
        "KIND",
        "TENANT(S)",
        "SCOPES",
        "PATTERN",
        "CREATED",
        "EXPIRES",
        "LAST USED",
        "REVOKED"
    );
    for t in tokens {
        let reach = match (&t.tenant, &t.tenants) {
            (Some(slug), _) => slug.clone(),
            (None, Some(list)) => list.join(","),
            _ => "-".to_owned(),
        };
        println!(
            "{:<36}  {:<7}  {:<20}  {:<27}  {:<10}  {:<16}  {:<16}  {:<16}  {:<16}  {}",
            t.id.to_string(),
            t.kind.as_str(),
            reach,
            t.scopes.join(","),
            t.key_pattern.as_deref().unwrap_or("-"),
            time(Some(t.created_at)),
            time(t.expires_at),
            time(t.last_used_at),
            time(t.revoked_at),
            t.description.as_deref().unwrap_or("")
        );
    }
}
