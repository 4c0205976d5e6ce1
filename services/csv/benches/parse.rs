//! Parse benchmark (M2 performance requirement): a 100,000-row import must
//! parse in well under a second in release mode and stay far below 200 MiB.
//!
//! Run: `cargo bench -p roster-csv --bench parse` (add `-- 1000000` for
//! another row count). Plain `harness = false` binary: no extra
//! dependencies, and it also reports memory, which criterion does not.
//! Memory is the process's peak resident set (Linux `VmHWM`, reset through
//! `/proc/self/clear_refs` before each parse) minus the resident set before
//! the parse, with the parsed file kept alive, as a review would keep it.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use roster_csv::{parse_import, ImportOptions};

/// A realistic export: every column, a third of the users with two
/// aliases, every tenth with a quoted multi-line note holding commas and
/// quotes, accented names.
fn generate(rows: usize, sep: char) -> String {
    let first = ["Anna", "René", "Jürgen", "Zoë", "Li", "María", "Ole", "Sam"];
    let last = [
        "Berg", "Müller", "Weiß", "O'Brien", "Nguyen", "García", "Smith",
    ];
    let departments = ["Sales", "Finance, Controlling", "IT", "Support", "HR"];
    let mut out = String::with_capacity(rows * 160);
    out.push('\u{FEFF}');
    out.push_str(
        &"email,first_name,last_name,aliases,home_phone,mobile,company,department,notes\r\n"
            .replace(',', &sep.to_string()),
    );
    for i in 0..rows {
        let f = first[i % first.len()];
        let l = last[i % last.len()];
        let aliases = if i % 3 == 0 {
            format!("\"u{i}.a@example.com; u{i}.b@example.org\"")
        } else {
            String::new()
        };
        let notes = if i % 10 == 0 {
            format!(
                "\"Joined in {}.\nSays \"\"hi\"\", likes tea.\"",
                2000 + i % 25
            )
        } else {
            String::new()
        };
        let dept = departments[i % departments.len()];
        let dept = if dept.contains(',') {
            format!("\"{dept}\"")
        } else {
            dept.to_string()
        };
        let cells = [
            format!("user{i}@example.com"),
            f.to_string(),
            l.to_string(),
            aliases,
            format!("(212) 555-{:04}", i % 10_000),
            format!("0170 {i:07}"),
            "Example Corp".to_string(),
            dept,
            notes,
        ];
        out.push_str(&cells.join(&sep.to_string()));
        out.push_str("\r\n");
    }
    out
}

/// CPU time of this thread in nanoseconds (Linux schedstat), so that the
/// figure holds on a machine busy with other builds.
fn cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

fn kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn bench(label: &str, bytes: &[u8], iterations: usize) {
    let options = ImportOptions::default();
    // Memory: one parse with the result kept.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = kib("VmRSS:");
    let start = Instant::now();
    let file = parse_import(bytes, &options).expect("the generated file parses");
    let first = start.elapsed();
    let peak = kib("VmHWM:");
    let rows = file.rows.len();
    let rejected = file.rejected_rows().count();
    assert_eq!(rejected, 0, "{:?}", file.errors().next());
    drop(file);

    let mut times: Vec<Duration> = vec![first];
    let mut cpu: Vec<u64> = Vec::new();
    for _ in 1..iterations {
        let cpu_start = cpu_ns();
        let start = Instant::now();
        let file = black_box(parse_import(black_box(bytes), &options).unwrap());
        times.push(start.elapsed());
        if let (Some(a), Some(b)) = (cpu_start, cpu_ns()) {
            cpu.push(b - a);
        }
        drop(file);
    }
    times.sort();
    cpu.sort();
    let median = times[times.len() / 2];
    let mib = bytes.len() as f64 / (1024.0 * 1024.0);
    print!(
        "{label:<24} {rows} rows, {mib:5.1} MiB: wall min {:6.1} ms, median {:6.1} ms",
        times[0].as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
    );
    if let Some(&c) = cpu.get(cpu.len() / 2) {
        print!("; CPU median {:6.1} ms", c as f64 / 1e6);
    }
    match (reset, before, peak) {
        (true, Some(before), Some(peak)) => println!(
            "; memory, result kept: +{:.1} MiB",
            peak.saturating_sub(before) as f64 / 1024.0
        ),
        _ => println!("; memory: not measurable here"),
    }
}

const VARIANTS: [&str; 3] = ["utf-8", "windows-1252", "utf-16le"];

/// Each variant runs in a process of its own, so that memory freed by one
/// does not hide what the next one takes.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; a number sets the row count.
    let rows: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(100_000);
    if let Some(variant) = args.iter().find_map(|a| a.strip_prefix("--variant=")) {
        run(variant, rows);
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    for variant in VARIANTS {
        let status = std::process::Command::new(&exe)
            .arg(format!("--variant={variant}"))
            .arg(rows.to_string())
            .status()
            .expect("run the variant");
        assert!(status.success(), "{variant} failed");
    }
}

fn run(variant: &str, rows: usize) {
    match variant {
        "utf-8" => {
            let text = generate(rows, ',');
            bench("utf-8 with BOM, comma", text.as_bytes(), 10);
        }
        "windows-1252" => {
            let text = generate(rows, ',');
            let (bytes, _, lossy) = encoding_rs::WINDOWS_1252.encode(&text[3..]);
            assert!(!lossy);
            let bytes = bytes.into_owned();
            drop(text);
            bench("windows-1252, comma", &bytes, 10);
        }
        "utf-16le" => {
            let text = generate(rows, '\t');
            let mut bytes = vec![0xFF, 0xFE];
            for unit in text[3..].encode_utf16() {
                bytes.extend_from_slice(&unit.to_le_bytes());
            }
            drop(text);
            bench("utf-16le with BOM, tab", &bytes, 10);
        }
        other => panic!("unknown variant {other}; use one of {VARIANTS:?}"),
    }
}
