//! Connecting to the test directories with ldap3 (plain, StartTLS, LDAPS
//! with a given CA), and [`LdapAdmin`]: online add / modify / delete /
//! rename for tests that change a running directory.

use std::collections::HashSet;
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry};

use crate::data::Entry;
use crate::error::{Error, Result};

/// How the connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// Plain LDAP (`ldap://`).
    Plain,
    /// `ldap://` upgraded with the StartTLS extended operation.
    StartTls,
    /// TLS from the first byte (`ldaps://`).
    Ldaps,
}

/// Opens an LDAP connection (driven on the current tokio runtime) to
/// `host:port`. With TLS, the server certificate must chain to a certificate
/// in `ca_pem` and name `host` (an IP address is checked against the
/// certificate's IP alternative names). No bind is made.
pub async fn connect(
    host: &str,
    port: u16,
    security: Security,
    ca_pem: Option<&str>,
) -> Result<Ldap> {
    let scheme = if security == Security::Ldaps {
        "ldaps"
    } else {
        "ldap"
    };
    let url = format!("{scheme}://{host}:{port}");
    let mut settings = LdapConnSettings::new().set_conn_timeout(Duration::from_secs(10));
    if security != Security::Plain {
        let ca = ca_pem.ok_or_else(|| {
            Error::Invalid(format!(
                "connecting to {url} with TLS needs a CA certificate"
            ))
        })?;
        settings = settings
            .set_config(crate::tls::client_config(ca)?)
            .set_starttls(security == Security::StartTls);
    }
    let (conn, ldap) = LdapConnAsync::with_settings(settings, &url)
        .await
        .map_err(|e| Error::ldap(format!("connect to {url} ({security:?})"), e))?;
    ldap3::drive!(conn);
    Ok(ldap)
}

/// [`connect`], then a simple bind that must succeed.
pub async fn bind(
    host: &str,
    port: u16,
    security: Security,
    ca_pem: Option<&str>,
    dn: &str,
    password: &str,
) -> Result<Ldap> {
    let mut ldap = connect(host, port, security, ca_pem).await?;
    ldap.simple_bind(dn, password)
        .await
        .and_then(|r| r.success())
        .map_err(|e| Error::ldap(format!("bind as {dn} to {host}:{port}"), e))?;
    Ok(ldap)
}

/// A bound LDAP connection with helpers for the changes tests make. Every
/// method fails unless the server reports success. Cloning shares the
/// connection.
#[derive(Clone, Debug)]
pub struct LdapAdmin {
    ldap: Ldap,
}

fn set<S: AsRef<[u8]>>(values: &[S]) -> HashSet<Vec<u8>> {
    values.iter().map(|v| v.as_ref().to_vec()).collect()
}

impl LdapAdmin {
    /// Wraps a bound connection.
    pub fn new(ldap: Ldap) -> LdapAdmin {
        LdapAdmin { ldap }
    }

    /// The underlying ldap3 handle, for anything the helpers do not cover.
    pub fn ldap(&self) -> Ldap {
        self.ldap.clone()
    }

    /// Adds one entry.
    pub async fn add(&self, entry: &Entry) -> Result<()> {
        let attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = entry
            .attrs
            .iter()
            .map(|(name, values)| (name.as_bytes().to_vec(), set(values)))
            .collect();
        self.ldap
            .clone()
            .add(&entry.dn, attrs)
            .await
            .and_then(|r| r.success())
            .map_err(|e| Error::ldap(format!("add {}", entry.dn), e))?;
        Ok(())
    }

    /// Adds entries one after the other, in order (so parents can come
    /// before their children); returns how many were added. For large
    /// directories prefer the offline loaders (`slapadd`, `ldbadd`).
    pub async fn add_all<I>(&self, entries: I) -> Result<usize>
    where
        I: IntoIterator<Item = Entry>,
    {
        // In order: an entry may be the parent of the next one.
        let mut n = 0;
        for entry in entries {
            self.add(&entry).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Deletes one (leaf) entry.
    pub async fn delete(&self, dn: &str) -> Result<()> {
        self.ldap
            .clone()
            .delete(dn)
            .await
            .and_then(|r| r.success())
            .map_err(|e| Error::ldap(format!("delete {dn}"), e))?;
        Ok(())
    }

    /// Deletes `dn` and everything below it (deepest entries first).
    pub async fn delete_subtree(&self, dn: &str) -> Result<usize> {
        let mut dns: Vec<String> = self
            .search(dn, Scope::Subtree, "(objectClass=*)", &["1.1"])
            .await?
            .into_iter()
            .map(|e| e.dn)
            .collect();
        // A child's DN is longer than its parent's: longest first.
        dns.sort_by_key(|d| std::cmp::Reverse(d.len()));
        for d in &dns {
            self.delete(d).await?;
        }
        Ok(dns.len())
    }

    /// Renames and/or moves `dn`: `new_rdn` (e.g. `cn=New Name`), under
    /// `new_parent` when given. Returns the new DN.
    pub async fn rename(
        &self,
        dn: &str,
        new_rdn: &str,
        new_parent: Option<&str>,
    ) -> Result<String> {
        self.ldap
            .clone()
            .modifydn(dn, new_rdn, true, new_parent)
            .await
            .and_then(|r| r.success())
            .map_err(|e| Error::ldap(format!("rename {dn} to {new_rdn}"), e))?;
        let parent = match new_parent {
            Some(p) => p.to_string(),
            None => crate::data::parent_dn(dn).to_string(),
        };
        Ok(format!("{new_rdn},{parent}"))
    }

    /// Moves `dn` under `new_parent`, keeping its RDN. Returns the new DN.
    pub async fn move_to(&self, dn: &str, new_parent: &str) -> Result<String> {
        let rdn = crate::data::first_rdn(dn).to_string();
        self.rename(dn, &rdn, Some(new_parent)).await
    }

    /// Applies modifications (ldap3's [`Mod`]) to `dn`.
    pub async fn modify(&self, dn: &str, mods: Vec<Mod<Vec<u8>>>) -> Result<()> {
        self.ldap
            .clone()
            .modify(dn, mods)
            .await
            .and_then(|r| r.success())
            .map_err(|e| Error::ldap(format!("modify {dn}"), e))?;
        Ok(())
    }

    /// Replaces all values of `attr` (no values: removes the attribute).
    pub async fn replace<S: AsRef<[u8]>>(&self, dn: &str, attr: &str, values: &[S]) -> Result<()> {
        self.modify(
            dn,
            vec![Mod::Replace(attr.as_bytes().to_vec(), set(values))],
        )
        .await
    }

    /// Adds values to `attr`.
    pub async fn add_values<S: AsRef<[u8]>>(
        &self,
        dn: &str,
        attr: &str,
        values: &[S],
    ) -> Result<()> {
        self.modify(dn, vec![Mod::Add(attr.as_bytes().to_vec(), set(values))])
            .await
    }

    /// Removes values from `attr` (no values: the whole attribute).
    pub async fn delete_values<S: AsRef<[u8]>>(
        &self,
        dn: &str,
        attr: &str,
        values: &[S],
    ) -> Result<()> {
        self.modify(dn, vec![Mod::Delete(attr.as_bytes().to_vec(), set(values))])
            .await
    }

    /// Adds `member_dn` to the `member` attribute of `group_dn`.
    pub async fn add_member(&self, group_dn: &str, member_dn: &str) -> Result<()> {
        self.add_values(group_dn, "member", &[member_dn]).await
    }

    /// Removes `member_dn` from the `member` attribute of `group_dn`.
    pub async fn remove_member(&self, group_dn: &str, member_dn: &str) -> Result<()> {
        self.delete_values(group_dn, "member", &[member_dn]).await
    }

    /// Sets or clears the ACCOUNTDISABLE bit (0x2) of `userAccountControl`
    /// (Active Directory and the AD-like slapd schema).
    pub async fn set_disabled(&self, dn: &str, disabled: bool) -> Result<()> {
        let entry = self
            .search(dn, Scope::Base, "(objectClass=*)", &["userAccountControl"])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Invalid(format!("{dn} not found")))?;
        let current: u32 = entry
            .attrs
            .get("userAccountControl")
            .and_then(|v| v.first())
            .and_then(|v| v.parse::<i64>().ok())
            .map(|v| v as u32)
            .unwrap_or(crate::data::UAC_NORMAL_ACCOUNT);
        let new = if disabled {
            current | crate::data::UAC_ACCOUNTDISABLE
        } else {
            current & !crate::data::UAC_ACCOUNTDISABLE
        };
        self.replace(dn, "userAccountControl", &[new.to_string()])
            .await
    }

    /// Searches and returns all entries; fails on any result but success.
    pub async fn search(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>> {
        let (entries, _) = self
            .ldap
            .clone()
            .search(base, scope, filter, attrs.to_vec())
            .await
            .and_then(|r| r.success())
            .map_err(|e| Error::ldap(format!("search {base} {filter}"), e))?;
        Ok(entries.into_iter().map(SearchEntry::construct).collect())
    }

    /// Unbinds and closes the connection.
    pub async fn unbind(self) -> Result<()> {
        self.ldap
            .clone()
            .unbind()
            .await
            .map_err(|e| Error::ldap("unbind", e))
    }
}
