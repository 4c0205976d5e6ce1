//! The W3C trace context of the code that appends events (issue 16): the
//! binary registers how to read the current span's `traceparent` (it owns
//! the OpenTelemetry set-up); appends record it in the events' metadata, and
//! the relay carries it into the CloudEvents (the distributed-tracing
//! extension) so a subscriber continues the trace.

use std::sync::OnceLock;

/// The metadata key (and CloudEvents attribute) of the trace context.
pub const META_TRACEPARENT: &str = "traceparent";

static CURRENT: OnceLock<fn() -> Option<String>> = OnceLock::new();

/// Registers how to read the current `traceparent` (once per process).
pub fn set_current(f: fn() -> Option<String>) {
    let _ = CURRENT.set(f);
}

/// The current span's `traceparent`, when tracing is on and a trace is open.
pub fn current() -> Option<String> {
    CURRENT.get().and_then(|f| f())
}
