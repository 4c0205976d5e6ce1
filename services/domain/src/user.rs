//! The user aggregate: one user, distribution list or public folder of a
//! customer, identified by a stable [`UserId`] across renames and returns.
//!
//! Uniqueness of addresses across users (U1) and the seat limit under
//! concurrency (T3) are cross-aggregate: the claims each event implies are
//! enforced by the log's append transaction. This aggregate checks what it
//! can see itself.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use roster_events::*;
use serde::{Deserialize, Serialize};

use crate::snapshot::ObjectId;

/// What an addition needs to know about the customer's licence (T3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeatUsage {
    pub used: u64,
    pub limit: u64,
}

/// Facts the application service looks up before a command.
#[derive(Debug, Clone, Default)]
pub struct UserServices {
    /// Present when the command may take a seat: manual and CSV additions
    /// and reactivations are refused beyond the limit; directory additions
    /// are not (the directory is the system of truth).
    pub seats: Option<SeatUsage>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddUser {
    pub user_id: UserId,
    pub customer_id: CustomerId,
    pub address: Address,
    pub kind: Kind,
    pub source: Source,
    pub profile: Profile,
    pub aliases: Vec<Address>,
    /// The directory object's stable id, for directory-sourced users.
    pub directory_id: Option<ObjectId>,
    /// For distribution lists, the members (U4).
    pub members: Vec<Address>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// Adds the user, or brings a deleted one back (U6).
    Add(AddUser),
    /// Sets the whole profile; unchanged fields emit nothing (D3.f).
    UpdateProfile {
        profile: Profile,
    },
    MapAlias {
        alias: Address,
    },
    UnmapAlias {
        alias: Address,
        reason: UnmapReason,
    },
    FlagForDeletion {
        reason: FlagReason,
        at: DateTime<Utc>,
        delete_at: Option<DateTime<Utc>>,
    },
    CancelDeletion {
        reason: CancelReason,
    },
    IgnoreConflict,
    Deactivate,
    Reactivate,
    Delete {
        reason: DeletionReason,
        at: DateTime<Utc>,
    },
    AddRule {
        rule_id: RuleId,
        kind: RuleKind,
        value: String,
    },
    RemoveRule {
        rule_id: RuleId,
    },
    /// The same directory object has a new primary address: a rename. An
    /// alias that becomes the primary is unmapped first. `taken_from` and
    /// `released_to` name the other users of a move inside one sync run
    /// (issue 12), by their primary address after the run.
    ChangeAddress {
        address: Address,
        taken_from: Option<Address>,
        released_to: Option<Address>,
    },
    /// The first half of a rename inside a cycle (a swap, a rotation): give
    /// up the primary address now, take `next` with the `ChangeAddress`
    /// that follows in the same append.
    ReleaseAddress {
        next: Address,
        released_to: Option<Address>,
    },
    /// An alias moves to another user in the same sync run (issue 12).
    ReleaseAlias {
        alias: Address,
        released_to: Address,
    },
    /// An alias moves here from another user in the same sync run.
    TakeAlias {
        alias: Address,
        taken_from: Address,
    },
    /// The user is managed by this directory object from now on (D2, D3.g).
    LinkDirectory {
        source: Source,
        directory_id: ObjectId,
    },
    /// The directory returned the user: an ignored absence ends (D3.m).
    EndAbsence,
    /// A distribution list's members (U4).
    SetMembers {
        members: Vec<Address>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("{0} already exists")]
    AlreadyExists(Address),
    #[error("no such user")]
    NotFound,
    #[error("the user has been deleted")]
    Deleted,
    #[error("the customer has {limit} seats and {used} are taken: raise the seat limit or remove a user first")]
    OverSeatLimit { used: u64, limit: u64 },
    #[error("{0} is the user's primary address, so it cannot also be an alias")]
    AliasIsPrimary(Address),
    #[error("{0} is already an alias of this user")]
    AliasAlreadyMapped(Address),
    #[error("{0} is not an alias of this user")]
    AliasNotMapped(Address),
    #[error("{field} {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("the user is not flagged for deletion")]
    NotFlagged,
    #[error("the user is already deactivated")]
    AlreadyDeactivated,
    #[error("the user is not deactivated")]
    NotDeactivated,
    #[error("a rule value must be an email address or a domain, such as sender@example.com or example.com: {0}")]
    InvalidRuleValue(String),
    #[error("the user already has a {kind} rule for {value}")]
    RuleExists { kind: &'static str, value: String },
    #[error("no such rule")]
    RuleNotFound,
    #[error("the user is not flagged, or its deletion is not due yet")]
    NotDue,
    #[error("only distribution lists have members")]
    NotAList,
    #[error(
        "the user is between two primary addresses: only the rename that completes it is possible"
    )]
    InTransit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    pub reason: FlagReason,
    pub flagged_at: DateTime<Utc>,
    pub delete_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub kind: RuleKind,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub user_id: Option<UserId>,
    pub customer_id: Option<CustomerId>,
    pub address: Option<Address>,
    pub kind: Kind,
    pub source: Option<Source>,
    pub status: Status,
    pub profile: Profile,
    pub aliases: BTreeSet<Address>,
    pub rules: BTreeMap<RuleId, Rule>,
    pub flag: Option<Flag>,
    /// An absence the administrator chose to ignore (D3.m).
    pub ignored: Option<FlagReason>,
    /// Set while deleted: what a return carries as the earlier identity (U6).
    pub deleted: Option<EarlierIdentity>,
    /// The directory object the user comes from.
    #[serde(default)]
    pub directory_id: Option<ObjectId>,
    /// Members of a distribution list.
    #[serde(default)]
    pub members: Vec<Address>,
    /// Between an `AddressReleased` and the `AddressChanged` that completes
    /// it (one append): the primary address is given up.
    #[serde(default)]
    pub in_transit: bool,
}

impl User {
    /// The user an added or returned event brings, active (U6: a return
    /// starts afresh, its earlier identity is in the event).
    fn added(e: UserAdded) -> User {
        User {
            user_id: Some(e.user_id),
            customer_id: Some(e.customer_id),
            address: Some(e.address),
            kind: e.kind,
            source: Some(e.source),
            status: Status::Active,
            profile: e.profile,
            aliases: e.aliases.into_iter().collect(),
            directory_id: e.directory_id,
            members: e.members,
            ..User::default()
        }
    }

    pub fn exists(&self) -> bool {
        self.address.is_some()
    }

    fn live_address(&self) -> Result<Address, UserError> {
        match (&self.address, self.status) {
            (None, _) => Err(UserError::NotFound),
            (Some(_), Status::Deleted) => Err(UserError::Deleted),
            (Some(a), _) => Ok(a.clone()),
        }
    }

    fn check_seat(services: &UserServices, kind: Kind, source: Source) -> Result<(), UserError> {
        if !kind.counts_against_licence() || !matches!(source, Source::Manual | Source::Csv) {
            return Ok(());
        }
        match services.seats {
            Some(SeatUsage { used, limit }) if used >= limit => {
                Err(UserError::OverSeatLimit { used, limit })
            }
            _ => Ok(()),
        }
    }

    fn check_aliases(address: &Address, aliases: Vec<Address>) -> Result<Vec<Address>, UserError> {
        let mut out: Vec<Address> = Vec::with_capacity(aliases.len());
        for alias in aliases {
            if &alias == address {
                return Err(UserError::AliasIsPrimary(alias));
            }
            if !out.contains(&alias) {
                out.push(alias);
            }
        }
        out.sort();
        Ok(out)
    }

    fn add(&self, cmd: AddUser, services: &UserServices) -> Result<UserEvent, UserError> {
        if self.exists() && self.status != Status::Deleted {
            return Err(UserError::AlreadyExists(
                self.address.clone().unwrap_or(cmd.address),
            ));
        }
        let profile = cmd.profile.normalised();
        profile
            .check()
            .map_err(|(field, reason)| UserError::InvalidField { field, reason })?;
        Self::check_seat(services, cmd.kind, cmd.source)?;
        let aliases = Self::check_aliases(&cmd.address, cmd.aliases)?;
        let user = UserAdded {
            user_id: cmd.user_id,
            customer_id: cmd.customer_id,
            address: cmd.address,
            kind: cmd.kind,
            source: cmd.source,
            profile,
            aliases,
            directory_id: cmd.directory_id,
            members: cmd.members,
        };
        // U6: a deleted user comes back with its earlier identity.
        Ok(match &self.deleted {
            Some(earlier) => UserEvent::UserReturned(UserReturned {
                user,
                earlier: earlier.clone(),
            }),
            None => UserEvent::UserAdded(user),
        })
    }

    /// The events a command results in; an empty list when nothing changes.
    /// Each command is decided by the method named after the rule it keeps.
    pub(crate) fn decide(
        &self,
        command: UserCommand,
        services: &UserServices,
    ) -> Result<Vec<UserEvent>, UserError> {
        if let UserCommand::Add(cmd) = command {
            return Ok(vec![self.add(cmd, services)?]);
        }
        let address = self.live_address()?;
        if self.in_transit && !matches!(command, UserCommand::ChangeAddress { .. }) {
            return Err(UserError::InTransit);
        }
        let event = match command {
            UserCommand::Add(_) => unreachable!("handled above"),
            UserCommand::UpdateProfile { profile } => self.update_profile(address, profile)?,
            UserCommand::MapAlias { alias } => Some(self.map_alias(address, alias, None)?),
            UserCommand::TakeAlias { alias, taken_from } => {
                Some(self.map_alias(address, alias, Some(taken_from))?)
            }
            UserCommand::ReleaseAlias { alias, released_to } => {
                Some(self.unmap_alias(address, alias, UnmapReason::Directory, Some(released_to))?)
            }
            UserCommand::UnmapAlias { alias, reason } => {
                Some(self.unmap_alias(address, alias, reason, None)?)
            }
            UserCommand::FlagForDeletion {
                reason,
                at,
                delete_at,
            } => self.flag_for_deletion(address, reason, at, delete_at),
            UserCommand::CancelDeletion { reason } => {
                if self.flag.is_none() {
                    return Err(UserError::NotFlagged);
                }
                Some(UserEvent::DeletionCancelled(DeletionCancelled {
                    address,
                    reason,
                }))
            }
            UserCommand::IgnoreConflict => Some(self.ignore_conflict(address)?),
            UserCommand::Deactivate => Some(self.deactivate(address)?),
            UserCommand::Reactivate => Some(self.reactivate(address, services)?),
            UserCommand::Delete { reason, at } => Some(self.delete(address, reason, at)?),
            UserCommand::AddRule {
                rule_id,
                kind,
                value,
            } => Some(self.add_rule(address, rule_id, kind, &value)?),
            UserCommand::RemoveRule { rule_id } => {
                if !self.rules.contains_key(&rule_id) {
                    return Err(UserError::RuleNotFound);
                }
                Some(UserEvent::RuleRemoved(RuleRemoved { address, rule_id }))
            }
            UserCommand::ChangeAddress {
                address: new,
                taken_from,
                released_to,
            } => return Ok(self.change_address(address, new, taken_from, released_to)),
            UserCommand::ReleaseAddress { next, released_to } => {
                (next != address).then_some(UserEvent::AddressReleased(AddressReleased {
                    address,
                    next,
                    released_to,
                }))
            }
            UserCommand::LinkDirectory {
                source,
                directory_id,
            } => self.link_directory(address, source, directory_id),
            UserCommand::EndAbsence => self
                .ignored
                .is_some()
                .then_some(UserEvent::AbsenceEnded(AbsenceEnded { address })),
            UserCommand::SetMembers { members } => self.set_members(address, members)?,
        };
        Ok(event.into_iter().collect())
    }

    /// D3.f: the whole profile is set; a change names the fields it
    /// changes, and no change emits nothing.
    fn update_profile(
        &self,
        address: Address,
        profile: Profile,
    ) -> Result<Option<UserEvent>, UserError> {
        let profile = profile.normalised();
        profile
            .check()
            .map_err(|(field, reason)| UserError::InvalidField { field, reason })?;
        let changed: Vec<String> = self
            .profile
            .fields()
            .iter()
            .zip(profile.fields().iter())
            .filter(|((_, old), (_, new))| old != new)
            .map(|((name, _), _)| name.to_string())
            .collect();
        if changed.is_empty() {
            return Ok(None);
        }
        Ok(Some(UserEvent::ProfileUpdated(ProfileUpdated {
            address,
            profile,
            changed,
        })))
    }

    /// U1, U3: an alias is never the user's own primary address nor mapped
    /// twice; `taken_from` names the user it moves from in a sync run.
    fn map_alias(
        &self,
        address: Address,
        alias: Address,
        taken_from: Option<Address>,
    ) -> Result<UserEvent, UserError> {
        if alias == address {
            return Err(UserError::AliasIsPrimary(alias));
        }
        if self.aliases.contains(&alias) {
            return Err(UserError::AliasAlreadyMapped(alias));
        }
        Ok(UserEvent::AliasMapped(AliasMapped {
            address,
            alias,
            taken_from,
        }))
    }

    /// U3: only a mapped alias can be unmapped; `released_to` names the
    /// user it moves to in a sync run.
    fn unmap_alias(
        &self,
        address: Address,
        alias: Address,
        reason: UnmapReason,
        released_to: Option<Address>,
    ) -> Result<UserEvent, UserError> {
        if !self.aliases.contains(&alias) {
            return Err(UserError::AliasNotMapped(alias));
        }
        Ok(UserEvent::AliasUnmapped(AliasUnmapped {
            address,
            alias,
            reason,
            released_to,
        }))
    }

    /// D3.h: flags once; an absence the administrator ignored is not
    /// flagged again (D3.m).
    fn flag_for_deletion(
        &self,
        address: Address,
        reason: FlagReason,
        at: DateTime<Utc>,
        delete_at: Option<DateTime<Utc>>,
    ) -> Option<UserEvent> {
        if self.flag.is_some() || self.ignored == Some(reason) {
            return None;
        }
        Some(UserEvent::FlaggedForDeletion(FlaggedForDeletion {
            address,
            reason,
            flagged_at: at,
            delete_at,
        }))
    }

    /// D3.m: ignoring a conflict ignores the absence the flag was for.
    fn ignore_conflict(&self, address: Address) -> Result<UserEvent, UserError> {
        let Some(flag) = &self.flag else {
            return Err(UserError::NotFlagged);
        };
        Ok(UserEvent::ConflictIgnored(ConflictIgnored {
            address,
            reason: flag.reason,
        }))
    }

    /// D3.m: a deactivation lifts a deletion flag and remembers its absence.
    fn deactivate(&self, address: Address) -> Result<UserEvent, UserError> {
        if self.status == Status::Deactivated {
            return Err(UserError::AlreadyDeactivated);
        }
        Ok(UserEvent::UserDeactivated(UserDeactivated {
            address,
            lifted_flag: self.flag.as_ref().map(|f| f.reason),
        }))
    }

    /// T3: a reactivation takes a seat again.
    fn reactivate(
        &self,
        address: Address,
        services: &UserServices,
    ) -> Result<UserEvent, UserError> {
        if self.status != Status::Deactivated {
            return Err(UserError::NotDeactivated);
        }
        if let Some(source) = self.source {
            Self::check_seat(services, self.kind, reactivation_source(source))?;
        }
        Ok(UserEvent::UserReactivated(UserReactivated { address }))
    }

    /// D3.i: only a flag whose delay has passed deletes by expiry; a
    /// deletion releases the aliases and removes the rules (U5).
    fn delete(
        &self,
        address: Address,
        reason: DeletionReason,
        at: DateTime<Utc>,
    ) -> Result<UserEvent, UserError> {
        if reason == DeletionReason::DelayExpired {
            match &self.flag {
                Some(Flag {
                    delete_at: Some(due),
                    ..
                }) if *due <= at => {}
                _ => return Err(UserError::NotDue),
            }
        }
        Ok(UserEvent::UserDeleted(UserDeleted {
            address,
            aliases: self.aliases.iter().cloned().collect(),
            reason,
            deleted_at: at,
            rules_removed: self.rules.keys().copied().collect(),
        }))
    }

    /// U5: a rule names a sender address or domain, once per kind.
    fn add_rule(
        &self,
        address: Address,
        rule_id: RuleId,
        kind: RuleKind,
        value: &str,
    ) -> Result<UserEvent, UserError> {
        let value = normalise_rule_value(value)?;
        if self
            .rules
            .values()
            .any(|r| r.kind == kind && r.value == value)
        {
            return Err(UserError::RuleExists {
                kind: kind.as_str(),
                value,
            });
        }
        Ok(UserEvent::RuleAdded(RuleAdded {
            address,
            rule_id,
            kind,
            value,
        }))
    }

    /// D3.e: a rename of the same object; an alias that becomes the
    /// primary is unmapped first.
    fn change_address(
        &self,
        address: Address,
        new: Address,
        taken_from: Option<Address>,
        released_to: Option<Address>,
    ) -> Vec<UserEvent> {
        if new == address {
            return vec![];
        }
        let mut out = Vec::new();
        if self.aliases.contains(&new) {
            out.push(UserEvent::AliasUnmapped(AliasUnmapped {
                address: address.clone(),
                alias: new.clone(),
                reason: UnmapReason::Directory,
                released_to: None,
            }));
        }
        out.push(UserEvent::AddressChanged(AddressChanged {
            address: new,
            previous: address,
            taken_from,
            released_to,
        }));
        out
    }

    /// D2, D3.g: the user is managed by this directory object from now on;
    /// the same link again emits nothing.
    fn link_directory(
        &self,
        address: Address,
        source: Source,
        directory_id: ObjectId,
    ) -> Option<UserEvent> {
        let previous_source = self.source.unwrap_or(Source::Manual);
        if previous_source == source && self.directory_id.as_ref() == Some(&directory_id) {
            return None;
        }
        Some(UserEvent::DirectoryLinked(DirectoryLinked {
            address,
            source,
            directory_id,
            previous_source,
        }))
    }

    /// U4: only a distribution list has members, kept sorted and distinct.
    fn set_members(
        &self,
        address: Address,
        mut members: Vec<Address>,
    ) -> Result<Option<UserEvent>, UserError> {
        if self.kind != Kind::DistributionList {
            return Err(UserError::NotAList);
        }
        members.sort();
        members.dedup();
        if members == self.members {
            return Ok(None);
        }
        Ok(Some(UserEvent::ListMembersChanged(ListMembersChanged {
            address,
            members,
        })))
    }
}

/// A reactivation by an administrator takes a seat like a manual addition.
fn reactivation_source(_source: Source) -> Source {
    Source::Manual
}

/// A rule names a sender address or a whole domain (U5).
pub fn normalise_rule_value(value: &str) -> Result<String, UserError> {
    let v = value.trim();
    if v.contains('@') {
        Address::parse(v)
            .map(|a| a.as_str().to_string())
            .map_err(|e| UserError::InvalidRuleValue(e.to_string()))
    } else {
        Domain::parse(v)
            .map(|d| d.as_str().to_string())
            .map_err(|e| UserError::InvalidRuleValue(e.to_string()))
    }
}

impl Aggregate for User {
    const TYPE: &'static str = roster_events::USER_AGGREGATE;
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = UserServices;

    handle_by_decide!(|user, command, services| user.decide(command, services));

    fn apply(&mut self, event: Self::Event) {
        match event {
            UserEvent::UserAdded(e) | UserEvent::UserReturned(UserReturned { user: e, .. }) => {
                *self = User::added(e)
            }
            UserEvent::ProfileUpdated(e) => self.profile = e.profile,
            UserEvent::AliasMapped(e) => {
                self.aliases.insert(e.alias);
            }
            UserEvent::AliasUnmapped(e) => {
                self.aliases.remove(&e.alias);
            }
            UserEvent::FlaggedForDeletion(e) => {
                self.status = Status::PendingDeletion;
                self.ignored = None;
                self.flag = Some(Flag {
                    reason: e.reason,
                    flagged_at: e.flagged_at,
                    delete_at: e.delete_at,
                });
            }
            UserEvent::DeletionCancelled(_) => {
                self.status = Status::Active;
                self.flag = None;
            }
            UserEvent::ConflictIgnored(e) => {
                self.status = Status::Active;
                self.flag = None;
                self.ignored = Some(e.reason);
            }
            UserEvent::UserDeactivated(e) => {
                self.status = Status::Deactivated;
                self.flag = None;
                if let Some(reason) = e.lifted_flag {
                    self.ignored = Some(reason);
                }
            }
            UserEvent::UserReactivated(_) => self.status = Status::Active,
            UserEvent::UserDeleted(e) => {
                self.deleted = Some(EarlierIdentity {
                    user_id: self.user_id.unwrap_or_default(),
                    address: e.address,
                    source: self.source.unwrap_or(Source::Manual),
                    deleted_at: e.deleted_at,
                    deletion_reason: e.reason,
                });
                self.status = Status::Deleted;
                self.flag = None;
                self.ignored = None;
                self.aliases.clear();
                self.rules.clear();
            }
            UserEvent::RuleAdded(e) => {
                self.rules.insert(
                    e.rule_id,
                    Rule {
                        kind: e.kind,
                        value: e.value,
                    },
                );
            }
            UserEvent::RuleRemoved(e) => {
                self.rules.remove(&e.rule_id);
            }
            UserEvent::AddressChanged(e) => {
                self.address = Some(e.address);
                self.in_transit = false;
            }
            UserEvent::AddressReleased(_) => self.in_transit = true,
            UserEvent::DirectoryLinked(e) => {
                self.source = Some(e.source);
                self.directory_id = Some(e.directory_id);
            }
            UserEvent::AbsenceEnded(_) => self.ignored = None,
            UserEvent::ListMembersChanged(e) => self.members = e.members,
        }
    }
}

impl ClaimsOf for User {
    fn claims(&self, aggregate_id: &str, event: &UserEvent) -> Vec<ClaimChange> {
        let Ok(owner) = UserId::parse(aggregate_id) else {
            return vec![];
        };
        let claim_all = |address: &Address, kind: Kind, aliases: &[Address]| {
            let mut out = vec![ClaimChange::ClaimAddress {
                address: address.clone(),
                owner,
                primary: true,
                seat: kind.counts_against_licence(),
            }];
            out.extend(aliases.iter().map(|a| ClaimChange::ClaimAddress {
                address: a.clone(),
                owner,
                primary: false,
                seat: false,
            }));
            out
        };
        match event {
            UserEvent::UserAdded(e) | UserEvent::UserReturned(UserReturned { user: e, .. }) => {
                claim_all(&e.address, e.kind, &e.aliases)
            }
            UserEvent::AliasMapped(e) => vec![ClaimChange::ClaimAddress {
                address: e.alias.clone(),
                owner,
                primary: false,
                seat: false,
            }],
            UserEvent::AliasUnmapped(e) => vec![ClaimChange::ReleaseAddress {
                address: e.alias.clone(),
                owner,
                tombstone: false,
            }],
            UserEvent::UserDeactivated(e) if self.kind.counts_against_licence() => {
                vec![ClaimChange::SetSeat {
                    address: e.address.clone(),
                    owner,
                    seat: false,
                }]
            }
            UserEvent::UserReactivated(e) if self.kind.counts_against_licence() => {
                vec![ClaimChange::SetSeat {
                    address: e.address.clone(),
                    owner,
                    seat: true,
                }]
            }
            UserEvent::AddressChanged(e) => {
                let mut out = vec![ClaimChange::ClaimAddress {
                    address: e.address.clone(),
                    owner,
                    primary: true,
                    seat: self.kind.counts_against_licence() && self.status != Status::Deactivated,
                }];
                // After an AddressReleased the previous address is already free.
                if !self.in_transit {
                    out.push(ClaimChange::ReleaseAddress {
                        address: e.previous.clone(),
                        owner,
                        tombstone: false,
                    });
                }
                out
            }
            UserEvent::AddressReleased(e) => vec![ClaimChange::ReleaseAddress {
                address: e.address.clone(),
                owner,
                tombstone: false,
            }],
            UserEvent::UserDeleted(e) => {
                let mut out = vec![ClaimChange::ReleaseAddress {
                    address: e.address.clone(),
                    owner,
                    tombstone: true,
                }];
                out.extend(e.aliases.iter().map(|a| ClaimChange::ReleaseAddress {
                    address: a.clone(),
                    owner,
                    tombstone: false,
                }));
                out
            }
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<User>;

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }
    fn uid() -> UserId {
        UserId(uuid::Uuid::from_u128(7))
    }
    fn cid() -> CustomerId {
        CustomerId(uuid::Uuid::from_u128(1))
    }
    fn t(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap()
    }
    fn profile(first: &str) -> Profile {
        Profile {
            first_name: Some(first.into()),
            ..Profile::default()
        }
    }
    fn add_cmd(source: Source, kind: Kind) -> UserCommand {
        UserCommand::Add(AddUser {
            user_id: uid(),
            customer_id: cid(),
            address: addr("Ann@Example.com"),
            kind,
            source,
            profile: profile(" Ann "),
            aliases: vec![addr("a@example.com"), addr("A@example.com")],
            directory_id: None,
            members: vec![],
        })
    }
    fn added() -> UserEvent {
        UserEvent::UserAdded(UserAdded {
            user_id: uid(),
            customer_id: cid(),
            address: addr("ann@example.com"),
            kind: Kind::User,
            source: Source::Manual,
            profile: profile("Ann"),
            aliases: vec![addr("a@example.com")],
            directory_id: None,
            members: vec![],
        })
    }
    fn flagged() -> UserEvent {
        UserEvent::FlaggedForDeletion(FlaggedForDeletion {
            address: addr("ann@example.com"),
            reason: FlagReason::Missing,
            flagged_at: t(1),
            delete_at: Some(t(8)),
        })
    }
    fn rule_added() -> UserEvent {
        UserEvent::RuleAdded(RuleAdded {
            address: addr("ann@example.com"),
            rule_id: RuleId(uuid::Uuid::from_u128(9)),
            kind: RuleKind::Deny,
            value: "spam.example".into(),
        })
    }
    fn seats(used: u64, limit: u64) -> UserServices {
        UserServices {
            seats: Some(SeatUsage { used, limit }),
        }
    }

    #[tokio::test]
    async fn m1_a_manual_user_is_added_with_profile_and_aliases() {
        Given::with(seats(0, 10))
            .given_no_previous_events()
            .when_async(add_cmd(Source::Manual, Kind::User))
            .await
            .then_expect_events(vec![added()]);
    }

    #[tokio::test]
    async fn u1_an_address_is_one_user() {
        Given::with(seats(1, 10))
            .given(vec![added()])
            .when_async(add_cmd(Source::Manual, Kind::User))
            .await
            .then_expect_error(UserError::AlreadyExists(addr("ann@example.com")));
    }

    #[tokio::test]
    async fn u2_a_new_user_is_active_with_its_source() {
        let mut user = User::default();
        user.apply(added());
        assert_eq!(user.status, Status::Active);
        assert_eq!(user.source, Some(Source::Manual));
        assert_eq!(user.profile.first_name.as_deref(), Some("Ann"));
    }

    #[tokio::test]
    async fn u2_fields_that_are_too_long_are_refused() {
        let mut cmd = add_cmd(Source::Manual, Kind::User);
        if let UserCommand::Add(a) = &mut cmd {
            a.profile.notes = Some("x".repeat(NOTES_MAX + 1));
        }
        Given::with(seats(0, 10))
            .given_no_previous_events()
            .when_async(cmd)
            .await
            .then_expect_error(UserError::InvalidField {
                field: "notes",
                reason: format!("is longer than {NOTES_MAX} characters"),
            });
    }

    #[tokio::test]
    async fn d3f_a_profile_update_names_what_changed_and_an_unchanged_one_emits_nothing() {
        let mut new = profile("Ann");
        new.department = Some("Sales".into());
        Given::with(UserServices::default())
            .given(vec![added()])
            .when_async(UserCommand::UpdateProfile {
                profile: new.clone(),
            })
            .await
            .then_expect_events(vec![UserEvent::ProfileUpdated(ProfileUpdated {
                address: addr("ann@example.com"),
                profile: new,
                changed: vec!["department".into()],
            })]);
        Given::with(UserServices::default())
            .given(vec![added()])
            .when_async(UserCommand::UpdateProfile {
                profile: profile("  Ann"),
            })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn u3_aliases_are_mapped_to_their_primary() {
        Given::with(UserServices::default())
            .given(vec![added()])
            .when_async(UserCommand::MapAlias {
                alias: addr("ann.b@example.com"),
            })
            .await
            .then_expect_events(vec![UserEvent::AliasMapped(AliasMapped {
                address: addr("ann@example.com"),
                alias: addr("ann.b@example.com"),
                taken_from: None,
            })]);
    }

    #[tokio::test]
    async fn u3_the_primary_cannot_be_its_own_alias_nor_an_alias_mapped_twice() {
        Given::with(UserServices::default())
            .given(vec![added()])
            .when_async(UserCommand::MapAlias {
                alias: addr("ANN@example.com"),
            })
            .await
            .then_expect_error(UserError::AliasIsPrimary(addr("ann@example.com")));
        Given::with(UserServices::default())
            .given(vec![added()])
            .when_async(UserCommand::MapAlias {
                alias: addr("a@example.com"),
            })
            .await
            .then_expect_error(UserError::AliasAlreadyMapped(addr("a@example.com")));
    }

    #[tokio::test]
    async fn t3_manual_additions_beyond_the_seat_limit_are_refused() {
        Given::with(seats(10, 10))
            .given_no_previous_events()
            .when_async(add_cmd(Source::Manual, Kind::User))
            .await
            .then_expect_error(UserError::OverSeatLimit {
                used: 10,
                limit: 10,
            });
        Given::with(seats(10, 10))
            .given_no_previous_events()
            .when_async(add_cmd(Source::Csv, Kind::User))
            .await
            .then_expect_error(UserError::OverSeatLimit {
                used: 10,
                limit: 10,
            });
    }

    #[tokio::test]
    async fn t3_directory_additions_beyond_the_limit_are_kept() {
        let events = Given::with(seats(10, 10))
            .given_no_previous_events()
            .when_async(add_cmd(Source::Ldap, Kind::User))
            .await
            .inspect_result()
            .unwrap();
        assert!(matches!(events[0], UserEvent::UserAdded(_)));
    }

    #[tokio::test]
    async fn t3_u4_lists_and_aliases_never_take_a_seat() {
        let events = Given::with(seats(10, 10))
            .given_no_previous_events()
            .when_async(add_cmd(Source::Manual, Kind::DistributionList))
            .await
            .inspect_result()
            .unwrap();
        let claims = User::default().claims(&uid().to_string(), &events[0]);
        assert!(claims
            .iter()
            .all(|c| matches!(c, ClaimChange::ClaimAddress { seat: false, .. })));
        let claims = User::default().claims(&uid().to_string(), &added());
        let seats: Vec<bool> = claims
            .iter()
            .map(|c| matches!(c, ClaimChange::ClaimAddress { seat: true, .. }))
            .collect();
        assert_eq!(
            seats,
            vec![true, false],
            "the primary takes a seat, the alias does not"
        );
    }

    #[tokio::test]
    async fn t3_reactivation_beyond_the_limit_is_refused() {
        let deactivated = UserEvent::UserDeactivated(UserDeactivated {
            address: addr("ann@example.com"),
            lifted_flag: None,
        });
        Given::with(seats(5, 5))
            .given(vec![added(), deactivated])
            .when_async(UserCommand::Reactivate)
            .await
            .then_expect_error(UserError::OverSeatLimit { used: 5, limit: 5 });
    }

    #[tokio::test]
    async fn u5_rules_are_kept_while_flagged_and_removed_with_the_user() {
        let mut user = User::default();
        for e in [added(), rule_added(), flagged()] {
            user.apply(e);
        }
        assert_eq!(user.rules.len(), 1, "kept while flagged");
        Given::with(UserServices::default())
            .given(vec![added(), rule_added(), flagged()])
            .when_async(UserCommand::Delete {
                reason: DeletionReason::DelayExpired,
                at: t(8),
            })
            .await
            .then_expect_events(vec![UserEvent::UserDeleted(UserDeleted {
                address: addr("ann@example.com"),
                aliases: vec![addr("a@example.com")],
                reason: DeletionReason::DelayExpired,
                deleted_at: t(8),
                rules_removed: vec![RuleId(uuid::Uuid::from_u128(9))],
            })]);
    }

    #[tokio::test]
    async fn u5_rule_values_are_addresses_or_domains() {
        Given::with(UserServices::default())
            .given(vec![added()])
            .when_async(UserCommand::AddRule {
                rule_id: RuleId(uuid::Uuid::from_u128(9)),
                kind: RuleKind::Deny,
                value: " SPAM.example ".into(),
            })
            .await
            .then_expect_events(vec![rule_added()]);
        let err = Given::with(UserServices::default())
            .given(vec![added()])
            .when_async(UserCommand::AddRule {
                rule_id: RuleId::new(),
                kind: RuleKind::Allow,
                value: "not a thing".into(),
            })
            .await
            .inspect_result()
            .unwrap_err();
        assert!(matches!(err, UserError::InvalidRuleValue(_)));
        Given::with(UserServices::default())
            .given(vec![added(), rule_added()])
            .when_async(UserCommand::AddRule {
                rule_id: RuleId::new(),
                kind: RuleKind::Deny,
                value: "spam.example".into(),
            })
            .await
            .then_expect_error(UserError::RuleExists {
                kind: "deny",
                value: "spam.example".into(),
            });
    }

    #[tokio::test]
    async fn u6_a_deleted_user_that_comes_back_carries_its_earlier_identity() {
        let deleted = UserEvent::UserDeleted(UserDeleted {
            address: addr("ann@example.com"),
            aliases: vec![addr("a@example.com")],
            reason: DeletionReason::DelayExpired,
            deleted_at: t(8),
            rules_removed: vec![],
        });
        let events = Given::with(seats(0, 10))
            .given(vec![added(), deleted])
            .when_async(add_cmd(Source::Ldap, Kind::User))
            .await
            .inspect_result()
            .unwrap();
        let UserEvent::UserReturned(ret) = &events[0] else {
            panic!("expected UserReturned, got {events:?}");
        };
        assert_eq!(
            ret.earlier,
            EarlierIdentity {
                user_id: uid(),
                address: addr("ann@example.com"),
                source: Source::Manual,
                deleted_at: t(8),
                deletion_reason: DeletionReason::DelayExpired,
            }
        );
        assert_eq!(ret.user.source, Source::Ldap);
    }

    #[tokio::test]
    async fn u2_deleted_users_accept_no_other_command() {
        let deleted = UserEvent::UserDeleted(UserDeleted {
            address: addr("ann@example.com"),
            aliases: vec![],
            reason: DeletionReason::Manual,
            deleted_at: t(2),
            rules_removed: vec![],
        });
        Given::with(UserServices::default())
            .given(vec![added(), deleted])
            .when_async(UserCommand::MapAlias {
                alias: addr("x@example.com"),
            })
            .await
            .then_expect_error(UserError::Deleted);
        Given::with(UserServices::default())
            .given_no_previous_events()
            .when_async(UserCommand::Deactivate)
            .await
            .then_expect_error(UserError::NotFound);
    }

    #[tokio::test]
    async fn d3i_a_flag_is_raised_once() {
        Given::with(UserServices::default())
            .given(vec![added()])
            .when_async(UserCommand::FlagForDeletion {
                reason: FlagReason::Missing,
                at: t(1),
                delete_at: Some(t(8)),
            })
            .await
            .then_expect_events(vec![flagged()]);
        Given::with(UserServices::default())
            .given(vec![added(), flagged()])
            .when_async(UserCommand::FlagForDeletion {
                reason: FlagReason::Missing,
                at: t(2),
                delete_at: Some(t(9)),
            })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn d3m_an_ignored_absence_is_not_flagged_again() {
        let ignored = UserEvent::ConflictIgnored(ConflictIgnored {
            address: addr("ann@example.com"),
            reason: FlagReason::Missing,
        });
        let mut user = User::default();
        for e in [added(), flagged(), ignored.clone()] {
            user.apply(e);
        }
        assert_eq!(user.status, Status::Active);
        Given::with(UserServices::default())
            .given(vec![added(), flagged(), ignored])
            .when_async(UserCommand::FlagForDeletion {
                reason: FlagReason::Missing,
                at: t(3),
                delete_at: Some(t(10)),
            })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn d3m_deactivating_a_flagged_user_lifts_the_flag_and_frees_the_seat() {
        let events = Given::with(UserServices::default())
            .given(vec![added(), flagged()])
            .when_async(UserCommand::Deactivate)
            .await
            .inspect_result()
            .unwrap();
        assert_eq!(
            events,
            vec![UserEvent::UserDeactivated(UserDeactivated {
                address: addr("ann@example.com"),
                lifted_flag: Some(FlagReason::Missing),
            })]
        );
        let mut before = User::default();
        before.apply(added());
        assert_eq!(
            before.claims(&uid().to_string(), &events[0]),
            vec![ClaimChange::SetSeat {
                address: addr("ann@example.com"),
                owner: uid(),
                seat: false
            }]
        );
    }

    #[tokio::test]
    async fn d3j_cancelling_a_flag_makes_the_user_active_again() {
        let cancelled = UserEvent::DeletionCancelled(DeletionCancelled {
            address: addr("ann@example.com"),
            reason: CancelReason::ReturnedByDirectory,
        });
        Given::with(UserServices::default())
            .given(vec![added(), flagged()])
            .when_async(UserCommand::CancelDeletion {
                reason: CancelReason::ReturnedByDirectory,
            })
            .await
            .then_expect_events(vec![cancelled.clone()]);
        let mut user = User::default();
        for e in [added(), flagged(), cancelled] {
            user.apply(e);
        }
        assert_eq!(user.status, Status::Active);
        assert!(user.flag.is_none());
    }

    #[tokio::test]
    async fn u1_deletion_releases_every_address_of_the_user() {
        let mut before = User::default();
        before.apply(added());
        let deleted = UserEvent::UserDeleted(UserDeleted {
            address: addr("ann@example.com"),
            aliases: vec![addr("a@example.com")],
            reason: DeletionReason::Manual,
            deleted_at: t(2),
            rules_removed: vec![],
        });
        assert_eq!(
            before.claims(&uid().to_string(), &deleted),
            vec![
                ClaimChange::ReleaseAddress {
                    address: addr("ann@example.com"),
                    owner: uid(),
                    tombstone: true
                },
                ClaimChange::ReleaseAddress {
                    address: addr("a@example.com"),
                    owner: uid(),
                    tombstone: false
                },
            ]
        );
    }
}
