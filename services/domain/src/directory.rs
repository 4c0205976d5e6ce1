//! The directory aggregate: one per customer (id = customer id). It holds
//! the directory connections (D5, D6), which one is enabled (D1), the
//! exceptions (D3.o) and additions (D3.p), and the sync runs: a run starts
//! only when none is running, so with several replicas a sync still runs
//! once (D4); a lease lets a run whose process died be superseded.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use roster_events::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[allow(clippy::large_enum_variant)] // one command per request, never stored in bulk
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryCommand {
    Configure {
        config: DirectoryConfig,
        secret_changed: bool,
    },
    /// Enables a configured directory. Enabling one while the other is
    /// enabled needs `confirm_switch` and disables the other (D1).
    Enable {
        kind: DirectoryKind,
        confirm_switch: bool,
    },
    Disable,
    AddException(Exception),
    RemoveException(Exception),
    AddAddition(Address),
    RemoveAddition(Address),
    StartSync {
        run_id: Uuid,
        trigger: SyncTrigger,
        at: DateTime<Utc>,
        lease: chrono::Duration,
    },
    CompleteSync {
        run_id: Uuid,
        counts: SyncCounts,
        over_seat_limit: bool,
        at: DateTime<Utc>,
    },
    FailSync {
        run_id: Uuid,
        code: String,
        reason: String,
        at: DateTime<Utc>,
    },
    HoldSync {
        run_id: Uuid,
        would_flag: u64,
        directory_users: u64,
        counts: SyncCounts,
        at: DateTime<Utc>,
    },
    /// Records that a completed or held run's outcome is visible (issue 11):
    /// sent once the append that recorded it has been projected.
    FinishSync {
        run_id: Uuid,
        at: DateTime<Utc>,
    },
    ConfirmHeld {
        run_id: Uuid,
        by_run: Uuid,
    },
    DiscardHeld {
        run_id: Uuid,
    },
    /// Records a "Test connection" in the audit trail (D7).
    RecordTest(DirectoryTested),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("no {} directory is configured: save its settings first", .0.as_str())]
    NotConfigured(DirectoryKind),
    #[error("directory sync is not enabled")]
    NotEnabled,
    #[error("{} sync is enabled; enabling {} disables it, so confirm the switch", .enabled.as_str(), .wanted.as_str())]
    SwitchNeedsConfirmation {
        enabled: DirectoryKind,
        wanted: DirectoryKind,
    },
    #[error("a sync is already running (run {0})")]
    AlreadyRunning(Uuid),
    #[error("run {0} is not the running sync")]
    NotRunning(Uuid),
    #[error("run {0} is still running")]
    NotFinished(Uuid),
    #[error("run {0} is not waiting for a decision")]
    NotHeld(Uuid),
    /// Scheduled runs wait while a run is held (D3.s): only an
    /// administrator's Sync Now supersedes it.
    #[error("run {0} is held by the mass-deletion guard: confirm or discard it, or start Sync Now to supersede it")]
    RunHeld(Uuid),
    #[error("run {run_id} was superseded by run {by_run} and can no longer be confirmed or discarded; decide on run {by_run} instead")]
    Superseded { run_id: Uuid, by_run: Uuid },
    #[error("that exception is already on the list")]
    ExceptionExists,
    #[error("no such exception")]
    NoSuchException,
    #[error("{0} is already on the additions list")]
    AdditionExists(Address),
    #[error("{0} is not on the additions list")]
    NoSuchAddition(Address),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunLease {
    pub run_id: Uuid,
    pub kind: DirectoryKind,
    pub trigger: SyncTrigger,
    pub started_at: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRun {
    pub run_id: Uuid,
    pub would_flag: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    pub configs: BTreeMap<DirectoryKind, DirectoryConfig>,
    pub secret_set: BTreeSet<DirectoryKind>,
    pub enabled: Option<DirectoryKind>,
    pub exceptions: BTreeSet<Exception>,
    pub additions: BTreeSet<Address>,
    pub running: Option<RunLease>,
    pub held: Option<HeldRun>,
    /// When the last run started (the scheduler's clock).
    pub last_started_at: Option<DateTime<Utc>>,
}

impl Directory {
    fn decide(&self, command: DirectoryCommand) -> Result<Vec<DirectoryEvent>, DirectoryError> {
        use DirectoryEvent as E;
        Ok(match command {
            DirectoryCommand::Configure {
                config,
                secret_changed,
            } => self.configure(config, secret_changed),
            DirectoryCommand::Enable {
                kind,
                confirm_switch,
            } => self.enable(kind, confirm_switch)?,
            DirectoryCommand::Disable => match self.enabled {
                Some(kind) => vec![E::DirectoryDisabled(DirectoryDisabled {
                    kind,
                    reason: DisableReason::Administrator,
                })],
                None => vec![],
            },
            DirectoryCommand::AddException(exception) => {
                if self.exceptions.contains(&exception) {
                    return Err(DirectoryError::ExceptionExists);
                }
                vec![E::ExceptionAdded(ExceptionAdded { exception })]
            }
            DirectoryCommand::RemoveException(exception) => {
                if !self.exceptions.contains(&exception) {
                    return Err(DirectoryError::NoSuchException);
                }
                vec![E::ExceptionRemoved(ExceptionRemoved { exception })]
            }
            DirectoryCommand::AddAddition(address) => {
                if self.additions.contains(&address) {
                    return Err(DirectoryError::AdditionExists(address));
                }
                vec![E::AdditionAdded(AdditionAdded { address })]
            }
            DirectoryCommand::RemoveAddition(address) => {
                if !self.additions.contains(&address) {
                    return Err(DirectoryError::NoSuchAddition(address));
                }
                vec![E::AdditionRemoved(AdditionRemoved { address })]
            }
            DirectoryCommand::StartSync {
                run_id,
                trigger,
                at,
                lease,
            } => self.start_sync(run_id, trigger, at, lease)?,
            DirectoryCommand::CompleteSync {
                run_id,
                counts,
                over_seat_limit,
                at,
            } => {
                self.check_running(run_id)?;
                vec![E::SyncCompleted(SyncCompleted {
                    run_id,
                    counts,
                    over_seat_limit,
                    finished_at: at,
                })]
            }
            DirectoryCommand::FailSync {
                run_id,
                code,
                reason,
                at,
            } => {
                self.check_running(run_id)?;
                vec![E::SyncFailed(SyncFailed {
                    run_id,
                    code,
                    reason,
                    finished_at: at,
                })]
            }
            DirectoryCommand::HoldSync {
                run_id,
                would_flag,
                directory_users,
                counts,
                at,
            } => {
                self.check_running(run_id)?;
                vec![E::SyncHeld(SyncHeld {
                    run_id,
                    would_flag,
                    directory_users,
                    counts,
                    finished_at: at,
                })]
            }
            DirectoryCommand::FinishSync { run_id, at } => {
                if self.running.as_ref().is_some_and(|r| r.run_id == run_id) {
                    return Err(DirectoryError::NotFinished(run_id));
                }
                vec![E::SyncFinished(SyncFinished {
                    run_id,
                    finished_at: at,
                })]
            }
            DirectoryCommand::ConfirmHeld { run_id, by_run } => {
                self.check_held(run_id)?;
                vec![E::SyncConfirmed(SyncConfirmed { run_id, by_run })]
            }
            DirectoryCommand::DiscardHeld { run_id } => {
                self.check_held(run_id)?;
                vec![E::SyncDiscarded(SyncDiscarded { run_id })]
            }
            DirectoryCommand::RecordTest(tested) => vec![E::DirectoryTested(tested)],
        })
    }

    /// D5: settings are recorded when they change, or when only the
    /// secret did.
    fn configure(&self, config: DirectoryConfig, secret_changed: bool) -> Vec<DirectoryEvent> {
        let kind = config.connection.kind();
        if self.configs.get(&kind) == Some(&config) && !secret_changed {
            return vec![];
        }
        vec![DirectoryEvent::DirectoryConfigured(DirectoryConfigured {
            config,
            secret_changed,
        })]
    }

    /// D1: one directory source at a time; switching from the enabled one
    /// needs the administrator's confirmation and disables it.
    fn enable(
        &self,
        kind: DirectoryKind,
        confirm_switch: bool,
    ) -> Result<Vec<DirectoryEvent>, DirectoryError> {
        use DirectoryEvent as E;
        if !self.configs.contains_key(&kind) {
            return Err(DirectoryError::NotConfigured(kind));
        }
        Ok(match self.enabled {
            Some(k) if k == kind => vec![],
            Some(other) if !confirm_switch => {
                return Err(DirectoryError::SwitchNeedsConfirmation {
                    enabled: other,
                    wanted: kind,
                })
            }
            Some(other) => vec![
                E::DirectoryDisabled(DirectoryDisabled {
                    kind: other,
                    reason: DisableReason::Switched,
                }),
                E::DirectoryEnabled(DirectoryEnabled { kind }),
            ],
            None => vec![E::DirectoryEnabled(DirectoryEnabled { kind })],
        })
    }

    /// One run at a time under a lease (an expired lease is abandoned); a
    /// held run is superseded by Sync Now and waited for by the scheduler
    /// (D3.s).
    fn start_sync(
        &self,
        run_id: Uuid,
        trigger: SyncTrigger,
        at: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<DirectoryEvent>, DirectoryError> {
        use DirectoryEvent as E;
        let kind = self.enabled.ok_or(DirectoryError::NotEnabled)?;
        let mut out = Vec::new();
        if let Some(r) = &self.running {
            if r.lease_until > at {
                return Err(DirectoryError::AlreadyRunning(r.run_id));
            }
            out.push(E::SyncFailed(SyncFailed {
                run_id: r.run_id,
                code: "abandoned".into(),
                reason: "the run did not finish before its lease expired (its process stopped); nothing it had not committed was applied".into(),
                finished_at: at,
            }));
        }
        // One held run at a time (D3.s, issue 11): Sync Now
        // supersedes it; the scheduler waits for the decision.
        if let Some(h) = &self.held {
            if trigger == SyncTrigger::Scheduled {
                return Err(DirectoryError::RunHeld(h.run_id));
            }
            out.push(E::SyncSuperseded(SyncSuperseded {
                run_id: h.run_id,
                by_run: run_id,
            }));
        }
        out.push(E::SyncStarted(SyncStarted {
            run_id,
            kind,
            trigger,
            started_at: at,
            lease_until: at + lease,
        }));
        Ok(out)
    }

    fn check_running(&self, run_id: Uuid) -> Result<(), DirectoryError> {
        match &self.running {
            Some(r) if r.run_id == run_id => Ok(()),
            _ => Err(DirectoryError::NotRunning(run_id)),
        }
    }

    fn check_held(&self, run_id: Uuid) -> Result<(), DirectoryError> {
        match &self.held {
            Some(h) if h.run_id == run_id => Ok(()),
            _ => Err(DirectoryError::NotHeld(run_id)),
        }
    }
}

impl Aggregate for Directory {
    const TYPE: &'static str = roster_events::DIRECTORY_AGGREGATE;
    type Command = DirectoryCommand;
    type Event = DirectoryEvent;
    type Error = DirectoryError;
    type Services = ();

    handle_by_decide!();

    fn apply(&mut self, event: Self::Event) {
        match event {
            DirectoryEvent::DirectoryConfigured(e) => {
                let kind = e.config.connection.kind();
                self.configs.insert(kind, e.config);
                if e.secret_changed {
                    self.secret_set.insert(kind);
                }
            }
            DirectoryEvent::DirectoryEnabled(e) => self.enabled = Some(e.kind),
            DirectoryEvent::DirectoryDisabled(_) => self.enabled = None,
            DirectoryEvent::ExceptionAdded(e) => {
                self.exceptions.insert(e.exception);
            }
            DirectoryEvent::ExceptionRemoved(e) => {
                self.exceptions.remove(&e.exception);
            }
            DirectoryEvent::AdditionAdded(e) => {
                self.additions.insert(e.address);
            }
            DirectoryEvent::AdditionRemoved(e) => {
                self.additions.remove(&e.address);
            }
            DirectoryEvent::SyncStarted(e) => {
                self.last_started_at = Some(e.started_at);
                self.running = Some(RunLease {
                    run_id: e.run_id,
                    kind: e.kind,
                    trigger: e.trigger,
                    started_at: e.started_at,
                    lease_until: e.lease_until,
                });
            }
            DirectoryEvent::SyncCompleted(e) => self.finish(e.run_id),
            DirectoryEvent::SyncFailed(e) => self.finish(e.run_id),
            DirectoryEvent::SyncHeld(e) => {
                self.finish(e.run_id);
                self.held = Some(HeldRun {
                    run_id: e.run_id,
                    would_flag: e.would_flag,
                });
            }
            DirectoryEvent::SyncConfirmed(_)
            | DirectoryEvent::SyncDiscarded(_)
            | DirectoryEvent::SyncSuperseded(_) => self.held = None,
            DirectoryEvent::SyncFinished(_) => {}
            DirectoryEvent::DirectoryTested(_) => {}
        }
    }
}

impl Directory {
    fn finish(&mut self, run_id: Uuid) {
        if self.running.as_ref().is_some_and(|r| r.run_id == run_id) {
            self.running = None;
        }
    }
}

impl ClaimsOf for Directory {
    fn claims(&self, _id: &str, _event: &DirectoryEvent) -> Vec<ClaimChange> {
        vec![]
    }
}

/// The directory as last read (D3.o): recorded, not decided, so its only
/// command records a change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryObjects;

impl Aggregate for DirectoryObjects {
    const TYPE: &'static str = roster_events::DIRECTORY_OBJECTS_AGGREGATE;
    type Command = DirectoryObjectsChanged;
    type Event = DirectoryObjectsEvent;
    type Error = std::convert::Infallible;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if !command.upserted.is_empty() || !command.removed.is_empty() {
            sink.write(
                DirectoryObjectsEvent::DirectoryObjectsChanged(command),
                self,
            )
            .await;
        }
        Ok(())
    }

    fn apply(&mut self, _event: Self::Event) {}
}

impl ClaimsOf for DirectoryObjects {
    fn claims(&self, _id: &str, _event: &DirectoryObjectsEvent) -> Vec<ClaimChange> {
        vec![]
    }
}

/// One sync run's report (issue 11): the objects it did not sync and the
/// addresses several objects claimed. Recorded, not decided: its command is
/// the event to record, a part of the report (an empty part records
/// nothing) or a reference to an earlier run's equal report (issue 17).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport;

impl Aggregate for SyncReport {
    const TYPE: &'static str = roster_events::SYNC_REPORT_AGGREGATE;
    type Command = roster_events::SyncReportEvent;
    type Event = roster_events::SyncReportEvent;
    type Error = std::convert::Infallible;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let empty = matches!(&command, roster_events::SyncReportEvent::SyncReported(r)
            if r.skipped.is_empty() && r.contested.is_empty());
        if !empty {
            sink.write(command, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, _event: Self::Event) {}
}

impl ClaimsOf for SyncReport {
    fn claims(&self, _id: &str, _event: &roster_events::SyncReportEvent) -> Vec<ClaimChange> {
        vec![]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Directory>;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 2, h, 0, 0).unwrap()
    }
    fn ldap() -> DirectoryConfig {
        DirectoryConfig {
            connection: Connection::Ldap(LdapSettings {
                host: "dc.example".into(),
                port: 636,
                ssl: true,
                starttls: false,
                tls: TlsSettings {
                    verify: true,
                    ca_pem: None,
                },
                bind_user: "svc@example.com".into(),
                base_dn: "dc=example,dc=com".into(),
                filter: None,
                include_disabled: false,
                include_public_folders: false,
                preset: LdapPreset::ActiveDirectory,
                attributes: AttributeMap::default(),
                timeout_secs: 30,
                full_sync_hours: None,
            }),
            poll_interval: PollInterval::Hours6,
            delete_after: DeleteAfter::Days7,
            guard: GuardSettings::default(),
        }
    }
    fn entra() -> DirectoryConfig {
        DirectoryConfig {
            connection: Connection::Entra(EntraSettings {
                tenant: "contoso.onmicrosoft.com".into(),
                client_id: "c1".into(),
                include_disabled: false,
                filter: None,
                login_endpoint: None,
                graph_endpoint: None,
                full_sync_hours: None,
            }),
            poll_interval: PollInterval::Hours6,
            delete_after: DeleteAfter::Days7,
            guard: GuardSettings::default(),
        }
    }
    fn configured(c: DirectoryConfig) -> DirectoryEvent {
        DirectoryEvent::DirectoryConfigured(DirectoryConfigured {
            config: c,
            secret_changed: true,
        })
    }
    fn enabled(kind: DirectoryKind) -> DirectoryEvent {
        DirectoryEvent::DirectoryEnabled(DirectoryEnabled { kind })
    }
    fn started(run: u128, h: u32) -> DirectoryEvent {
        DirectoryEvent::SyncStarted(SyncStarted {
            run_id: Uuid::from_u128(run),
            kind: DirectoryKind::Ldap,
            trigger: SyncTrigger::Manual,
            started_at: t(h),
            lease_until: t(h + 1),
        })
    }

    #[tokio::test]
    async fn d1_enabling_the_other_directory_needs_confirmation_and_disables_the_first() {
        let history = vec![
            configured(ldap()),
            enabled(DirectoryKind::Ldap),
            configured(entra()),
        ];
        Given::with(())
            .given(history.clone())
            .when_async(DirectoryCommand::Enable {
                kind: DirectoryKind::Entra,
                confirm_switch: false,
            })
            .await
            .then_expect_error(DirectoryError::SwitchNeedsConfirmation {
                enabled: DirectoryKind::Ldap,
                wanted: DirectoryKind::Entra,
            });
        Given::with(())
            .given(history)
            .when_async(DirectoryCommand::Enable {
                kind: DirectoryKind::Entra,
                confirm_switch: true,
            })
            .await
            .then_expect_events(vec![
                DirectoryEvent::DirectoryDisabled(DirectoryDisabled {
                    kind: DirectoryKind::Ldap,
                    reason: DisableReason::Switched,
                }),
                enabled(DirectoryKind::Entra),
            ]);
    }

    #[tokio::test]
    async fn d1_only_a_configured_directory_can_be_enabled() {
        Given::with(())
            .given_no_previous_events()
            .when_async(DirectoryCommand::Enable {
                kind: DirectoryKind::Ldap,
                confirm_switch: false,
            })
            .await
            .then_expect_error(DirectoryError::NotConfigured(DirectoryKind::Ldap));
    }

    #[tokio::test]
    async fn d4_one_sync_per_customer_at_a_time() {
        Given::with(())
            .given(vec![
                configured(ldap()),
                enabled(DirectoryKind::Ldap),
                started(1, 9),
            ])
            .when_async(DirectoryCommand::StartSync {
                run_id: Uuid::from_u128(2),
                trigger: SyncTrigger::Manual,
                at: t(9),
                lease: chrono::Duration::hours(1),
            })
            .await
            .then_expect_error(DirectoryError::AlreadyRunning(Uuid::from_u128(1)));
    }

    #[tokio::test]
    async fn d4_a_run_whose_process_died_is_superseded_after_its_lease() {
        let events = Given::with(())
            .given(vec![
                configured(ldap()),
                enabled(DirectoryKind::Ldap),
                started(1, 9),
            ])
            .when_async(DirectoryCommand::StartSync {
                run_id: Uuid::from_u128(2),
                trigger: SyncTrigger::Scheduled,
                at: t(11),
                lease: chrono::Duration::hours(1),
            })
            .await
            .inspect_result()
            .unwrap();
        assert!(
            matches!(&events[0], DirectoryEvent::SyncFailed(f) if f.code == "abandoned" && f.run_id == Uuid::from_u128(1))
        );
        assert!(
            matches!(&events[1], DirectoryEvent::SyncStarted(s) if s.run_id == Uuid::from_u128(2))
        );
    }

    #[tokio::test]
    async fn d3q_a_disabled_directory_starts_no_sync() {
        let disabled = DirectoryEvent::DirectoryDisabled(DirectoryDisabled {
            kind: DirectoryKind::Ldap,
            reason: DisableReason::Administrator,
        });
        Given::with(())
            .given(vec![
                configured(ldap()),
                enabled(DirectoryKind::Ldap),
                disabled,
            ])
            .when_async(DirectoryCommand::StartSync {
                run_id: Uuid::from_u128(2),
                trigger: SyncTrigger::Manual,
                at: t(9),
                lease: chrono::Duration::hours(1),
            })
            .await
            .then_expect_error(DirectoryError::NotEnabled);
    }

    #[tokio::test]
    async fn d3s_a_held_run_waits_for_confirm_or_discard() {
        let held = DirectoryEvent::SyncHeld(SyncHeld {
            run_id: Uuid::from_u128(1),
            would_flag: 900,
            directory_users: 1000,
            counts: SyncCounts::default(),
            finished_at: t(9),
        });
        let history = vec![
            configured(ldap()),
            enabled(DirectoryKind::Ldap),
            started(1, 9),
            held,
        ];
        let mut d = Directory::default();
        for e in history.clone() {
            d.apply(e);
        }
        assert!(d.running.is_none());
        assert_eq!(d.held.as_ref().map(|h| h.would_flag), Some(900));
        Given::with(())
            .given(history.clone())
            .when_async(DirectoryCommand::DiscardHeld {
                run_id: Uuid::from_u128(1),
            })
            .await
            .then_expect_events(vec![DirectoryEvent::SyncDiscarded(SyncDiscarded {
                run_id: Uuid::from_u128(1),
            })]);
        Given::with(())
            .given(history)
            .when_async(DirectoryCommand::DiscardHeld {
                run_id: Uuid::from_u128(7),
            })
            .await
            .then_expect_error(DirectoryError::NotHeld(Uuid::from_u128(7)));
    }

    fn held(run: u128, h: u32) -> DirectoryEvent {
        DirectoryEvent::SyncHeld(SyncHeld {
            run_id: Uuid::from_u128(run),
            would_flag: 900,
            directory_users: 1000,
            counts: SyncCounts::default(),
            finished_at: t(h),
        })
    }

    #[tokio::test]
    async fn d3s_sync_now_supersedes_a_held_run_and_the_scheduler_waits_for_the_decision() {
        let history = vec![
            configured(ldap()),
            enabled(DirectoryKind::Ldap),
            started(1, 9),
            held(1, 9),
        ];
        Given::with(())
            .given(history.clone())
            .when_async(DirectoryCommand::StartSync {
                run_id: Uuid::from_u128(2),
                trigger: SyncTrigger::Scheduled,
                at: t(16),
                lease: chrono::Duration::hours(1),
            })
            .await
            .then_expect_error(DirectoryError::RunHeld(Uuid::from_u128(1)));
        let events = Given::with(())
            .given(history.clone())
            .when_async(DirectoryCommand::StartSync {
                run_id: Uuid::from_u128(2),
                trigger: SyncTrigger::Manual,
                at: t(10),
                lease: chrono::Duration::hours(1),
            })
            .await
            .inspect_result()
            .unwrap();
        assert_eq!(
            events[0],
            DirectoryEvent::SyncSuperseded(SyncSuperseded {
                run_id: Uuid::from_u128(1),
                by_run: Uuid::from_u128(2),
            })
        );
        assert!(
            matches!(&events[1], DirectoryEvent::SyncStarted(s) if s.run_id == Uuid::from_u128(2))
        );
        // The superseded run is no longer held: never an orphan.
        let mut d = Directory::default();
        for e in history.into_iter().chain(events) {
            d.apply(e);
        }
        assert!(d.held.is_none());
        // The new run held too: it is the only held run.
        d.apply(held(2, 10));
        assert_eq!(d.held.as_ref().map(|h| h.run_id), Some(Uuid::from_u128(2)));
    }

    #[tokio::test]
    async fn issue11_a_run_is_finished_only_after_it_stopped_running() {
        let history = vec![
            configured(ldap()),
            enabled(DirectoryKind::Ldap),
            started(1, 9),
        ];
        Given::with(())
            .given(history.clone())
            .when_async(DirectoryCommand::FinishSync {
                run_id: Uuid::from_u128(1),
                at: t(10),
            })
            .await
            .then_expect_error(DirectoryError::NotFinished(Uuid::from_u128(1)));
        Given::with(())
            .given(history.into_iter().chain([held(1, 9)]).collect())
            .when_async(DirectoryCommand::FinishSync {
                run_id: Uuid::from_u128(1),
                at: t(10),
            })
            .await
            .then_expect_events(vec![DirectoryEvent::SyncFinished(SyncFinished {
                run_id: Uuid::from_u128(1),
                finished_at: t(10),
            })]);
    }

    #[tokio::test]
    async fn d3o_d3p_exceptions_and_additions_are_lists_without_duplicates() {
        let e = Exception::User {
            object_id: "abc".into(),
        };
        Given::with(())
            .given(vec![DirectoryEvent::ExceptionAdded(ExceptionAdded {
                exception: e.clone(),
            })])
            .when_async(DirectoryCommand::AddException(e))
            .await
            .then_expect_error(DirectoryError::ExceptionExists);
        let a = Address::parse("new@example.com").unwrap();
        Given::with(())
            .given_no_previous_events()
            .when_async(DirectoryCommand::RemoveAddition(a.clone()))
            .await
            .then_expect_error(DirectoryError::NoSuchAddition(a));
    }
}
