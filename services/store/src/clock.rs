//! Time, injectable: the service asks a [`Clock`], tests move a [`ManualClock`].

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }
    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().expect("clock lock") = t;
    }
    pub fn advance(&self, d: Duration) {
        let mut t = self.0.lock().expect("clock lock");
        *t += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}

/// A clock read from a file holding an RFC 3339 instant (falls back to the
/// system clock while the file is missing or unreadable). Lets end-to-end
/// tests move time, e.g. past a deletion delay, without waiting:
/// `ROSTER_CLOCK_FILE`. It exists only in builds for tests (the
/// `test-clock` feature, which the test crates enable); a release build
/// has no way to move its time.
#[cfg(feature = "test-clock")]
#[derive(Debug, Clone)]
pub struct FileClock(pub std::path::PathBuf);

#[cfg(feature = "test-clock")]
impl Clock for FileClock {
    fn now(&self) -> DateTime<Utc> {
        std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|s| DateTime::parse_from_rfc3339(s.trim()).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(Utc::now)
    }
}

/// The clock read from `path`, in builds for tests; `None` in every other
/// build (the override does not exist there).
pub fn file_clock(path: &std::path::Path) -> Option<Arc<dyn Clock>> {
    #[cfg(feature = "test-clock")]
    {
        Some(Arc::new(FileClock(path.to_path_buf())))
    }
    #[cfg(not(feature = "test-clock"))]
    {
        let _ = path;
        None
    }
}

#[cfg(test)]
mod tests {
    /// The override is never on by default: a release build
    /// (`cargo build --release -p roster`) does not have it.
    #[test]
    fn the_clock_override_is_not_a_default_feature() {
        let manifest = include_str!("../Cargo.toml");
        let features = manifest
            .split("[features]")
            .nth(1)
            .expect("a [features] table");
        let default = features
            .lines()
            .find(|l| l.trim_start().starts_with("default"))
            .unwrap_or("");
        assert!(!default.contains("test-clock"), "{default}");
    }

    #[cfg(not(feature = "test-clock"))]
    #[test]
    fn without_the_feature_there_is_no_file_clock() {
        assert!(super::file_clock(std::path::Path::new("/tmp/now.txt")).is_none());
    }

    #[cfg(feature = "test-clock")]
    #[test]
    fn with_the_feature_the_file_clock_reads_the_file() {
        use chrono::TimeZone;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("now.txt");
        std::fs::write(&path, "2031-01-02T03:04:05Z").unwrap();
        let clock = super::file_clock(&path).unwrap();
        assert_eq!(
            clock.now(),
            chrono::Utc.with_ymd_and_hms(2031, 1, 2, 3, 4, 5).unwrap()
        );
    }
}
