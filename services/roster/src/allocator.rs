//! The process's allocator (mimalloc) and the two settings Roster gives it.
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
//!
//! Transparent huge pages are turned off for the process (Linux), unless
//! the operator sets mimalloc's `MIMALLOC_ALLOW_THP`. Where the kernel's
//! setting is `always` (Debian's and many distributions' default), every
//! first touch of an aligned 2 MiB of mimalloc's arenas faulted in and
//! zeroed a whole huge page, and each purge split one again: at a
//! 100,000-user initial sync 15% of the server's CPU was the kernel
//! zeroing pages (`clear_page_erms`), and resident memory counted whole
//! huge pages of which a phase used a part: 198-223 MiB at its peak
//! against 165-182 MiB without them (issue 17, docs/performance.md).
//! mimalloc reads that variable before `main` and turns them off itself
//! when it is 0; Roster does it, through the same `prctl`, when it is not
//! set at all. The setting is the process's alone: the database and the
//! rest of the host keep theirs.
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

/// The environment variable through which mimalloc reads whether the
/// process may use transparent huge pages.
const ALLOW_THP_VAR: &str = "MIMALLOC_ALLOW_THP";

/// Whether Roster turns transparent huge pages off: unless the operator
/// chose through the environment (`var` reads it).
pub fn huge_pages_off(var: impl Fn(&str) -> Option<OsString>) -> bool {
    var(ALLOW_THP_VAR).is_none()
}

/// Sets the purge delay and turns transparent huge pages off. Call it
/// first in `main`, before any thread is started: mimalloc's options are
/// plain values its threads read.
pub fn configure() {
    if let Some(ms) = purge_delay(|name| std::env::var_os(name)) {
        // SAFETY: `mi_option_set` stores one value into mimalloc's option
        // table; the index is the purge delay's (checked by the test
        // below), and no other thread runs yet.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms as _) }
    }
    if huge_pages_off(|name| std::env::var_os(name)) {
        disable_huge_pages();
    }
}

/// Turns transparent huge pages off for this process and its children
/// (`PR_SET_THP_DISABLE`, Linux 3.15+). Where the kernel refuses, the
/// process runs as before: the setting saves CPU and memory, it is not
/// needed for correctness.
#[cfg(target_os = "linux")]
fn disable_huge_pages() {
    // SAFETY: `prctl` with `PR_SET_THP_DISABLE` sets one flag of the
    // process's memory map; it reads no pointer.
    let set = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if set != 0 {
        // Logging is not set up yet: stderr, once.
        eprintln!(
            "roster: transparent huge pages could not be turned off for the process ({}); it runs with the kernel's setting",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn disable_huge_pages() {}

/// Whether transparent huge pages are off for this process.
#[cfg(target_os = "linux")]
pub fn huge_pages_disabled() -> bool {
    // SAFETY: `prctl` with `PR_GET_THP_DISABLE` returns the flag; it reads
    // no pointer.
    unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1 }
}

#[cfg(not(target_os = "linux"))]
pub fn huge_pages_disabled() -> bool {
    false
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

    /// Issue 17: transparent huge pages are off for the process unless the
    /// operator sets mimalloc's own variable (0 or 1), which then decides.
    #[cfg(target_os = "linux")]
    #[test]
    fn i17_transparent_huge_pages_are_off_for_the_process_unless_the_operator_sets_them() {
        assert!(huge_pages_off(|_| None));
        for v in ["0", "1"] {
            let set = |name: &str| (name == ALLOW_THP_VAR).then(|| OsString::from(v));
            assert!(!huge_pages_off(set), "{v}");
        }
        // Another of mimalloc's variables does not decide it.
        assert!(huge_pages_off(
            |name| (name == "MIMALLOC_PURGE_DELAY").then(|| OsString::from("5"))
        ));

        let operator = std::env::var_os(ALLOW_THP_VAR);
        configure();
        match operator.as_deref().and_then(|v| v.to_str()) {
            // Set by Roster, or by mimalloc itself before `main`.
            None | Some("0") => assert!(huge_pages_disabled()),
            // The operator allows them: the flag is as the process began,
            // which this test cannot know beyond that Roster left it.
            Some(_) => {}
        }
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
