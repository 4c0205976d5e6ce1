//! `roster admin`: console administrators from the command line (issue 14),
//! and the console's settings shared with `roster serve`.

use anyhow::{bail, Context};
use chrono::Duration;
use clap::{Args, Subcommand};
use roster_app::admins::{Admins, SessionSettings};
use roster_app::security::By;
use roster_events::{AdminId, CustomerId, PartnerId};
use roster_store::admins::LinkKind;
use roster_store::auth::Scope;
use roster_store::{Clock, Db, SystemClock};

/// The console's settings (docs/admins.md).
#[derive(Args, Clone, Debug)]
pub struct ConsoleArgs {
    /// The URL people open the console at, such as https://roster.example.com.
    /// Cookies are Secure when it is https; forms are accepted only from its
    /// origin; links printed by `roster admin` start with it.
    /// Unset: http://<listen address>, forms from the request's own host.
    #[arg(long, env = "ROSTER_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Minutes a console session may stay unused (idle timeout).
    #[arg(
        long,
        env = "ROSTER_CONSOLE_IDLE_MINUTES",
        default_value_t = 30,
        global = true
    )]
    pub console_idle_minutes: i64,
    /// Hours a console session lasts at most, used or not (absolute timeout).
    #[arg(
        long,
        env = "ROSTER_CONSOLE_ABSOLUTE_HOURS",
        default_value_t = 12,
        global = true
    )]
    pub console_absolute_hours: i64,
    /// Hours an invitation link works.
    #[arg(
        long,
        env = "ROSTER_CONSOLE_INVITE_HOURS",
        default_value_t = 168,
        global = true
    )]
    pub console_invite_hours: i64,
    /// Minutes a password-reset link works.
    #[arg(
        long,
        env = "ROSTER_CONSOLE_RESET_MINUTES",
        default_value_t = 60,
        global = true
    )]
    pub console_reset_minutes: i64,
}

impl ConsoleArgs {
    pub fn settings(&self) -> anyhow::Result<SessionSettings> {
        let check = |name: &str, v: i64, max: i64| -> anyhow::Result<i64> {
            if v < 1 || v > max {
                bail!("{name} must be between 1 and {max}, not {v}");
            }
            Ok(v)
        };
        Ok(SessionSettings {
            idle: Duration::minutes(check(
                "ROSTER_CONSOLE_IDLE_MINUTES",
                self.console_idle_minutes,
                24 * 60,
            )?),
            absolute: Duration::hours(check(
                "ROSTER_CONSOLE_ABSOLUTE_HOURS",
                self.console_absolute_hours,
                24 * 30,
            )?),
            invite_ttl: Duration::hours(check(
                "ROSTER_CONSOLE_INVITE_HOURS",
                self.console_invite_hours,
                24 * 30,
            )?),
            reset_ttl: Duration::minutes(check(
                "ROSTER_CONSOLE_RESET_MINUTES",
                self.console_reset_minutes,
                24 * 60,
            )?),
        })
    }

    /// The public URL, checked: http(s) with a host.
    pub fn public_url(&self) -> anyhow::Result<Option<String>> {
        let Some(url) = self
            .public_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        else {
            return Ok(None);
        };
        let lower = url.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"));
        match rest {
            Some(r) if !r.is_empty() && !r.starts_with('/') => {
                Ok(Some(url.trim_end_matches('/').to_string()))
            }
            _ => bail!(
                "ROSTER_PUBLIC_URL must be an http:// or https:// URL with a host, such as https://roster.example.com, not '{url}'"
            ),
        }
    }

    /// The base of links printed on the command line.
    pub fn link_base(&self, listen: Option<std::net::SocketAddr>) -> anyhow::Result<String> {
        Ok(match self.public_url()? {
            Some(u) => u,
            None => format!(
                "http://{}",
                listen.map_or_else(|| "127.0.0.1:8080".to_string(), |l| l.to_string())
            ),
        })
    }
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Adds an administrator and prints an invitation link (or sets the
    /// password read from standard input with --password-stdin).
    Add {
        #[arg(long)]
        email: String,
        /// The name shown in the console.
        #[arg(long)]
        name: String,
        /// A partner administrator of this partner id (default: the only partner, if there is one).
        #[arg(long, conflicts_with = "customer")]
        partner: Option<String>,
        /// A customer administrator of this customer id.
        #[arg(long)]
        customer: Option<String>,
        /// Read the password from the first line of standard input instead of printing an invitation.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Lists administrators (never their secrets).
    List,
    /// Disables an administrator (by email or id) and ends its sessions.
    Disable { admin: String },
    /// Prints a new invitation link for an administrator without a password.
    Invite { admin: String },
    /// Prints a password-reset link for an administrator.
    Reset { admin: String },
    /// Prints the security log (sign-ins, failures, administrator, token and
    /// sign-in policy changes), newest first, as tab-separated lines.
    Log {
        /// Only this partner's rows (default: every row, also failed
        /// sign-ins for emails no administrator has).
        #[arg(long)]
        partner: Option<String>,
        /// How many rows.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

async fn find(db: &Db, who: &str) -> anyhow::Result<roster_store::admins::Admin> {
    let found = match AdminId::parse(who) {
        Ok(id) => db.admin(id).await?,
        Err(_) => db.admin_by_email(who).await?,
    };
    found.with_context(|| {
        format!("no administrator '{who}' (give an email or an id; see `roster admin list`)")
    })
}

async fn scope_of(
    db: &Db,
    partner: Option<String>,
    customer: Option<String>,
) -> anyhow::Result<Scope> {
    if let Some(c) = customer {
        return Ok(Scope::Customer(CustomerId::parse(&c)?));
    }
    if let Some(p) = partner {
        return Ok(Scope::Partner(PartnerId::parse(&p)?));
    }
    let partners = db.list_partners().await?;
    match partners.as_slice() {
        [(only, _)] => Ok(Scope::Partner(*only)),
        [] => bail!("no partner exists yet: start `roster serve` once (it creates the first), or pass --partner ID"),
        _ => bail!(
            "several partners exist: pass --partner ID ({})",
            partners
                .iter()
                .map(|(id, name)| format!("{id} {name}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub async fn run(
    admins: Admins,
    console: &ConsoleArgs,
    command: AdminCommand,
) -> anyhow::Result<()> {
    let db = admins.db.clone();
    let now = SystemClock.now();
    let base = console.link_base(None)?;
    let by = By::cli();
    match command {
        AdminCommand::Add {
            email,
            name,
            partner,
            customer,
            password_stdin,
        } => {
            let scope = scope_of(&db, partner, customer).await?;
            let password = if password_stdin {
                Some(read_password()?)
            } else {
                None
            };
            let id = admins
                .add(&email, &name, scope, password.as_deref(), &by, now)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("added administrator {id} ({email})");
            if password.is_none() {
                let secret = admins
                    .issue_link(id, LinkKind::Invite, &by, now)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                eprintln!(
                    "send them this invitation link; it works once, for {} hours:",
                    console.console_invite_hours
                );
                println!("{base}/invite/{secret}");
            }
        }
        AdminCommand::List => {
            for a in db.list_admins().await? {
                let scope = match a.scope {
                    Scope::Partner(p) => format!("partner:{p}"),
                    Scope::Customer(c) => format!("customer:{c}"),
                };
                let state = match (a.disabled_at, &a.password_hash) {
                    (Some(d), _) => format!("disabled {}", d.to_rfc3339()),
                    (None, None) => "invited".into(),
                    (None, Some(_)) => "active".into(),
                };
                let totp = if a.totp_enabled { "totp" } else { "-" };
                println!(
                    "{}\t{}\t{}\t{scope}\t{state}\t{totp}",
                    a.admin_id, a.email, a.display_name
                );
            }
        }
        AdminCommand::Disable { admin } => {
            let a = find(&db, &admin).await?;
            if admins
                .disable(&by, &a, now)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                eprintln!(
                    "disabled {} ({}); their sessions have ended",
                    a.admin_id, a.email
                );
            } else {
                bail!("{} is already disabled", a.email);
            }
        }
        AdminCommand::Invite { admin } => {
            let a = find(&db, &admin).await?;
            if a.password_hash.is_some() {
                bail!(
                    "{} has already accepted an invitation: use `roster admin reset`",
                    a.email
                );
            }
            let secret = admins
                .issue_link(a.admin_id, LinkKind::Invite, &by, now)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "invitation for {}; it works once, for {} hours:",
                a.email, console.console_invite_hours
            );
            println!("{base}/invite/{secret}");
        }
        AdminCommand::Reset { admin } => {
            let a = find(&db, &admin).await?;
            let secret = admins
                .issue_link(a.admin_id, LinkKind::Reset, &by, now)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "password reset for {}; it works once, for {} minutes:",
                a.email, console.console_reset_minutes
            );
            println!("{base}/reset/{secret}");
        }
        AdminCommand::Log { partner, limit } => print_log(&admins, partner, limit).await?,
    }
    Ok(())
}

/// `roster admin log`: the security log as tab-separated lines (time,
/// event, email, actor, client address, partner, detail).
async fn print_log(admins: &Admins, partner: Option<String>, limit: i64) -> anyhow::Result<()> {
    let scope = partner
        .map(|p| PartnerId::parse(&p).map(Scope::Partner))
        .transpose()?;
    let page = admins
        .security_log(scope, None, limit)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for e in page.events {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            e.recorded_at.to_rfc3339(),
            e.kind,
            opt(e.email),
            opt(e.actor.map(|a| a.to_string())),
            e.client_addr,
            opt(e.partner_id.map(|p| p.to_string())),
            e.detail
        );
    }
    Ok(())
}
