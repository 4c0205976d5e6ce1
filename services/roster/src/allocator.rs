//! The process's allocator (mimalloc) and the one setting Roster gives it.
//!
//! mimalloc 3 keeps memory a program freed for a second (its purge delay,
//! 1,000 ms) before it hands it back to the system, in case it is asked
//! for again. A sync's phases each free most of what the one before held
//! (the directory as read, the plan's indexes, the append's pieces), so
//! with that delay a phase's memory was still counted while the next one
//! allocated its own: the server's resident memory peaked 20-60 MiB above
//! what it held (issue 17, docs/performance.md). Roster sets the delay to
//! 100 ms, unless the operator sets mimalloc's own `MIMALLOC_PURGE_DELAY`
//! (or its older name `MIMALLOC_RESET_DELAY`), which then applies as
//! given.
#![allow(unsafe_code)]

use std::ffi::OsString;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Roster's purge delay, in milliseconds.
pub const PURGE_DELAY_MS: i64 = 100;

/// The environment variables through which mimalloc reads its purge delay.
const PURGE_DELAY_VARS: [&str; 2] = ["MIMALLOC_PURGE_DELAY", "MIMALLOC_RESET_DELAY"];

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (v2 and v3 alike);
/// the Rust bindings do not name it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The delay Roster sets, or `None` where the operator set one through
/// the environment (`var` reads it).
pub fn purge_delay(var: impl Fn(&str) -> Option<OsString>) -> Option<i64> {
    if PURGE_DELAY_VARS.iter().any(|name| var(name).is_some()) {
        None
    } else {
        Some(PURGE_DELAY_MS)
    }
}

/// Sets the purge delay. Call it first in `main`, before any thread is
/// started: mimalloc's options are plain values its threads read.
pub fn configure() {
    if let Some(ms) = purge_delay(|name| std::env::var_os(name)) {
        // SAFETY: `mi_option_set` stores one value into mimalloc's option
        // table; the index is the purge delay's (checked by the test
        // below), and no other thread runs yet.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms as _) }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::c_long;

    use super::*;

    /// The purge delay mimalloc uses now, in milliseconds.
    fn current_purge_delay() -> c_long {
        // SAFETY: `mi_option_get` reads one value of mimalloc's option table.
        unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }
    }

    /// Issue 17: freed memory goes back to the system after 100 ms, not
    /// mimalloc's 1 s; an operator's own setting is left as given.
    #[test]
    fn i17_the_allocator_returns_freed_memory_after_100_ms_unless_the_operator_sets_it() {
        assert_eq!(purge_delay(|_| None), Some(100));
        for name in PURGE_DELAY_VARS {
            let set = |v: &str| (v == name).then(|| OsString::from("5"));
            assert_eq!(purge_delay(set), None, "{name}");
        }

        // The option's index is the purge delay's: before `configure`, it
        // holds the environment's value or mimalloc 3's default of 1,000
        // ms, which no other option of mimalloc's has.
        let from_env = PURGE_DELAY_VARS
            .iter()
            .find_map(|name| std::env::var(name).ok())
            .map(|v| {
                v.trim()
                    .parse::<c_long>()
                    .expect("a number of milliseconds")
            });
        assert_eq!(current_purge_delay(), from_env.unwrap_or(1000));
        configure();
        assert_eq!(
            current_purge_delay(),
            from_env.unwrap_or(PURGE_DELAY_MS as c_long)
        );
    }
}
