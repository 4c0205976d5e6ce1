//! Roster's CSV layer for user import and export (SPEC M2, with U1, U2 and
//! T3 in mind). Pure: bytes in, typed rows out; bytes out for exports. No
//! database and no IO, so the HTTP endpoints and the database checks (managed
//! domain, owner of each address, seat limit, directory-managed users) are
//! built on top of it.
//!
//! # Import
//! [`parse_import`] reads a file as people really have them:
//! - encoding ([`Encoding`]): UTF-8 with or without BOM, UTF-16 LE/BE
//!   ("Unicode text"), Windows-1252 (Excel's plain CSV on Western Windows),
//!   detected or named by [`ImportOptions::encoding`]; a UTF-8 file with a
//!   few invalid byte sequences stays UTF-8, each sequence an error of its
//!   row ([`RowErrorKind::InvalidEncoding`]);
//! - delimiter ([`Delimiter`]): comma, semicolon or tab, detected from the
//!   header and first rows with quoting taken into account, or named by a
//!   `sep=;` first line or [`ImportOptions::delimiter`];
//! - RFC 4180 quoting with embedded delimiters, doubled quotes and line
//!   breaks; blank lines ignored; LF, CRLF and CR line endings. Line numbers
//!   are physical: the line where a row starts, 1 being the first line;
//! - cells trimmed, or read exactly as an export escaped them
//!   ([`unescape_cell`]);
//! - header names matched case-insensitively with synonyms ([`Column`]);
//!   unknown columns become [`FileWarning`]s; cells echoed in messages are
//!   shortened to [`MAX_ECHO_CHARS`] ([`echo`]);
//! - every data row becomes a [`RowOutcome`]: a [`ParsedRow`] (address,
//!   aliases, a [`ProfilePatch`] that tells "column absent" from "cell
//!   empty") or a [`RejectedRow`] with every [`RowError`] found.
//!
//! A file that cannot be read as a whole gives a [`FileError`].
//!
//! # Export
//! [`CsvWriter`] writes UTF-8 (optionally with BOM), CRLF, properly quoted
//! CSV in which no cell can start a formula ([`escape_formula`]), and which
//! an import reads back exactly ([`unescape_cell`]);
//! [`users_csv`] writes a user list; [`sample_csv`] is the download sample.
//!
//! ```
//! use roster_csv::{parse_import, sample_csv, ImportOptions, RowOutcome};
//!
//! let file = parse_import(sample_csv("example.com").as_bytes(), &ImportOptions::default())?;
//! assert_eq!(file.rows.len(), 3);
//! assert!(file.rows.iter().all(|r| matches!(r, RowOutcome::Parsed(_))));
//! # Ok::<(), roster_csv::FileError>(())
//! ```
#![forbid(unsafe_code)]
// No production function over 120 lines (clippy.toml; issue 13).
#![warn(clippy::too_many_lines)]
#![warn(missing_docs)]

pub mod aliases;
pub mod columns;
pub mod delimiter;
pub mod encoding;
pub mod error;
pub mod export;
pub mod import;
pub mod patch;

pub use aliases::{split_aliases, AliasToken};
pub use columns::{Column, HeaderCell, MAX_NAME_CHARS, MAX_NOTES_CHARS, MAX_PHONE_CHARS};
pub use delimiter::{detect_delimiter, Delimiter};
pub use encoding::{decode, Decoded, Encoding, EncodingChoice, InvalidSequence, UnknownEncoding};
pub use error::{
    echo, AddressRole, ChosenDelimiter, FileError, FileWarning, RowError, RowErrorKind,
    MAX_ECHO_CHARS,
};
pub use export::{
    escape_formula, needs_escape, sample_csv, unescape_cell, users_csv, CellValue, CsvWriter,
    ExportOptions, UserRecord, ESCAPE, FORMULA_TRIGGERS, USER_HEADER,
};
pub use import::{
    parse_import, ImportFile, ImportOptions, ParsedRow, RejectedRow, RowOutcome, DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ROWS,
};
pub use patch::ProfilePatch;
