//! File-level errors and warnings, and per-row errors. Every message says
//! what to fix; every kind has a stable `code` for API error bodies.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::columns::Column;
use crate::delimiter::Delimiter;
use crate::encoding::Encoding;

/// Why a whole file was refused. Nothing in it was read as rows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// No bytes, or only a BOM, blank lines and spaces.
    #[error(
        "the file is empty: it needs a header line, such as 'email,first_name,last_name', and one line per user"
    )]
    Empty,
    /// More bytes than [`crate::ImportOptions::max_bytes`].
    #[error(
        "the file is {size} bytes, over the limit of {limit} bytes: split it into smaller files"
    )]
    TooLarge {
        /// Size of the input in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// More data rows than [`crate::ImportOptions::max_rows`].
    #[error(
        "the file has more than {limit} user rows (the first one over the limit is on line {line}): split it into files of at most {limit} rows"
    )]
    TooManyRows {
        /// The limit in rows.
        limit: usize,
        /// The line of the first row over the limit.
        line: u64,
    },
    /// Binary content: a spreadsheet workbook, a PDF, an image...
    #[error("the file is not CSV text: {what}")]
    Binary {
        /// What the content looks like and what to do instead.
        what: String,
    },
    /// A single column whose header names no address column: most likely
    /// not a CSV file at all, or one read with the wrong separator.
    #[error("{}", not_csv_message(.first_line, .delimiter.as_ref()))]
    NotCsv {
        /// The first line, shortened.
        first_line: String,
        /// The separator, when it was chosen rather than detected (the
        /// file was split by it and nothing else).
        delimiter: Option<ChosenDelimiter>,
    },
    /// The first line holds an address, not column names.
    #[error(
        "the first line holds the address '{address}' where column names are expected: add a header line, such as 'email,first_name,last_name', above the first user"
    )]
    MissingHeader {
        /// The address found in the first line.
        address: String,
    },
    /// The header has no column for the primary address.
    #[error(
        "no address column: the header has {found}; name the column that holds the users' addresses one of: {accepted}",
        found = quote_list(.found),
        accepted = Column::Email.accepted_names().join(", ")
    )]
    NoAddressColumn {
        /// The header cells as written.
        found: Vec<String>,
    },
    /// Two header cells map to the same column.
    #[error(
        "columns '{first}' and '{second}' both mean {column}: keep one of them or rename the other"
    )]
    DuplicateColumn {
        /// The column both map to.
        column: Column,
        /// The first header cell, as written.
        first: String,
        /// The second header cell, as written.
        second: String,
    },
    /// A quoted cell is never closed, so the rest of the file would be one cell.
    #[error(
        "the quoted cell that starts on line {line} is never closed: add the missing '\"' (a quote inside a quoted cell is written twice: \"\")"
    )]
    UnterminatedQuote {
        /// The line of the opening quote.
        line: u64,
    },
    /// The bytes are not in the encoding named by the request or a BOM, or
    /// a file that is not UTF-8 holds a byte Windows-1252 leaves undefined.
    #[error("{}", invalid_encoding_message(*.encoding, *.line, *.column, .bytes, *.declared))]
    InvalidEncoding {
        /// The encoding the bytes were read as.
        encoding: Encoding,
        /// The line of the first invalid byte sequence.
        line: u64,
        /// Its character position in the line (1 = the first character).
        column: u64,
        /// The invalid bytes, such as `0x81`.
        bytes: String,
        /// The encoding was named (by the request or a byte-order mark);
        /// `false` when Windows-1252 was only the guess for a file that is
        /// not UTF-8.
        declared: bool,
    },
}

/// A separator that was chosen, not detected, and who chose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChosenDelimiter {
    /// The separator used.
    pub delimiter: Delimiter,
    /// Named by a `sep=` first line (else by the request).
    pub by_sep_line: bool,
    /// A separator the first line does use, when there is one.
    pub fits: Option<Delimiter>,
}

fn plural(d: Delimiter) -> &'static str {
    match d {
        Delimiter::Comma => "commas",
        Delimiter::Semicolon => "semicolons",
        Delimiter::Tab => "tabs",
    }
}

fn not_csv_message(first_line: &str, chosen: Option<&ChosenDelimiter>) -> String {
    let accepted = Column::Email.accepted_names().join(", ");
    let Some(chosen) = chosen else {
        return format!(
            "the file does not look like CSV: its first line, '{first_line}', is not separated by commas, semicolons or tabs and is not an address column header ({accepted})"
        );
    };
    let (who, fix) = if chosen.by_sep_line {
        (
            "named by the file's 'sep=' line",
            "correct or remove the 'sep=' line",
        )
    } else {
        (
            "chosen with the request",
            "choose that separator, or leave it out to have it detected",
        )
    };
    let d = chosen.delimiter;
    match chosen.fits {
        Some(fits) => format!(
            "the first line, '{first_line}', has no {} ({} is the separator {who}) but is separated by {}: {fix}",
            plural(d),
            d.name(),
            plural(fits),
        ),
        None => format!(
            "the first line, '{first_line}', has no {} ({} is the separator {who}) and is not an address column header ({accepted}): use a header line such as 'email{}first_name{}last_name'",
            plural(d),
            d.name(),
            d.as_char(),
            d.as_char(),
        ),
    }
}

fn invalid_encoding_message(
    encoding: Encoding,
    line: u64,
    column: u64,
    bytes: &str,
    declared: bool,
) -> String {
    if declared {
        format!(
            "the file is not valid {encoding}: {bytes} on line {line}, character {column}, is not a character in {encoding}; save the file again as UTF-8, or choose the encoding it was saved in"
        )
    } else {
        format!(
            "the file is neither UTF-8 nor Windows-1252: {bytes} on line {line}, character {column}, is not a character in either; save the file as 'CSV UTF-8' and upload it again, or choose the encoding it was saved in"
        )
    }
}

impl FileError {
    /// A stable code for API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            FileError::Empty => "csv_empty",
            FileError::TooLarge { .. } => "csv_too_large",
            FileError::TooManyRows { .. } => "csv_too_many_rows",
            FileError::Binary { .. } => "csv_binary",
            FileError::NotCsv { .. } => "csv_not_csv",
            FileError::MissingHeader { .. } => "csv_missing_header",
            FileError::NoAddressColumn { .. } => "csv_no_address_column",
            FileError::DuplicateColumn { .. } => "csv_duplicate_column",
            FileError::UnterminatedQuote { .. } => "csv_unterminated_quote",
            FileError::InvalidEncoding { .. } => "csv_invalid_encoding",
        }
    }
}

/// The most characters of a cell that a message or a review echoes.
pub const MAX_ECHO_CHARS: usize = 200;

/// A cell as messages and reviews echo it: at most [`MAX_ECHO_CHARS`]
/// characters, the last one `…` when it was cut, so that a huge cell never
/// makes a huge answer.
pub fn echo(cell: &str) -> Cow<'_, str> {
    // Bytes bound characters from above: count only when it may matter.
    if cell.len() <= MAX_ECHO_CHARS || cell.chars().count() <= MAX_ECHO_CHARS {
        return Cow::Borrowed(cell);
    }
    let mut out: String = cell.chars().take(MAX_ECHO_CHARS - 1).collect();
    out.push('…');
    Cow::Owned(out)
}

/// At most this many header cells are named in a message.
const MAX_LISTED: usize = 20;

fn quote_list(items: &[String]) -> String {
    if items.iter().all(|s| s.is_empty()) {
        return "no column names".to_string();
    }
    let mut out = items
        .iter()
        .take(MAX_LISTED)
        .map(|s| format!("'{}'", echo(s)))
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > MAX_LISTED {
        out.push_str(&format!(" and {} more", items.len() - MAX_LISTED));
    }
    out
}

/// Something about the file that was accepted but may not be what the
/// person meant. Shown with the review; nothing is refused because of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum FileWarning {
    /// A header cell that maps to no column; its cells are ignored.
    UnknownColumn {
        /// The header cell as written.
        name: String,
        /// 1-based column position.
        position: usize,
    },
    /// A generic header name ([`Column::is_weak_name`]) that is ignored
    /// because another header cell names the same column.
    ShadowedColumn {
        /// The header cell as written.
        name: String,
        /// 1-based column position.
        position: usize,
        /// The header cell used instead, as written.
        used: String,
        /// The column both would map to.
        column: Column,
    },
    /// A column without a header name holds values; they are ignored.
    UnnamedColumnHasValues {
        /// 1-based column position.
        position: usize,
        /// The first line with a value in it.
        line: u64,
    },
    /// The file was read as Windows-1252 because most of its non-ASCII
    /// bytes are not UTF-8, but some characters are correctly encoded
    /// UTF-8: those are read wrong.
    MixedEncoding {
        /// How many correctly encoded UTF-8 characters the file holds.
        characters: usize,
    },
}

impl fmt::Display for FileWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileWarning::UnknownColumn { name, position } => write!(
                f,
                "column {position}, '{name}', is not a known column and is ignored (known columns: {})",
                Column::ALL.map(Column::name).join(", ")
            ),
            FileWarning::ShadowedColumn {
                name,
                position,
                used,
                column,
            } => write!(
                f,
                "column {position}, '{name}', is ignored: '{used}' is used for {column}"
            ),
            FileWarning::UnnamedColumnHasValues { position, line } => write!(
                f,
                "column {position} has no name in the header but holds values (first on line {line}); they are ignored"
            ),
            FileWarning::MixedEncoding { characters } => write!(
                f,
                "the file was read as Windows-1252, as most of its accented characters are not UTF-8, but {characters} characters in it are UTF-8 and are read wrong (such as 'Ã©' for 'é'): save the file as 'CSV UTF-8', or choose its encoding"
            ),
        }
    }
}

/// The role of an address in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressRole {
    /// The row's primary address (the address column).
    Primary,
    /// One of the row's aliases.
    Alias,
}

/// What is wrong with one row. [`fmt::Display`] gives the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum RowErrorKind {
    /// The address cell is empty while other cells are not.
    MissingAddress,
    /// The primary address does not parse.
    InvalidAddress {
        /// The value as written, at most [`MAX_ECHO_CHARS`] characters.
        value: String,
        /// Why, from [`roster_events::Address::parse`].
        reason: String,
    },
    /// An alias does not parse.
    InvalidAlias {
        /// The value as written, at most [`MAX_ECHO_CHARS`] characters.
        value: String,
        /// Why, from [`roster_events::Address::parse`].
        reason: String,
    },
    /// A byte sequence that is not UTF-8, in a file that is UTF-8 but for
    /// a few such sequences (M2: read as UTF-8, not guessed as another
    /// encoding). Stands for U+FFFD in the value.
    InvalidEncoding {
        /// The column.
        column: Column,
        /// The physical line of the sequence (a multi-line cell can put it
        /// below the row's first line).
        line: u64,
        /// Its character position in that line (1 = the first character).
        position: u64,
        /// The bytes, such as `0xE9`.
        bytes: String,
    },
    /// An alias is the row's own primary address.
    AliasIsPrimary {
        /// The address.
        address: String,
    },
    /// The address was already used by an earlier row (U1: an address
    /// belongs to at most one user).
    DuplicateAddress {
        /// The normalised address.
        address: String,
        /// Its role in this row.
        here: AddressRole,
        /// The earlier line.
        other_line: u64,
        /// Its role on the earlier line.
        there: AddressRole,
    },
    /// A value is longer than its column allows.
    TooLong {
        /// The column.
        column: Column,
        /// The limit in characters.
        max: usize,
        /// The length in characters.
        len: usize,
    },
    /// A value holds a control character (line breaks are allowed in notes only).
    ControlCharacter {
        /// The column.
        column: Column,
        /// The character's code point, such as `U+0007`.
        code_point: String,
    },
    /// The row has more non-empty cells than the header has columns.
    TooManyCells {
        /// Cells in the row.
        cells: usize,
        /// Columns in the header.
        columns: usize,
    },
    /// The row has fewer cells than the header has columns.
    TooFewCells {
        /// Cells in the row.
        cells: usize,
        /// Columns in the header.
        columns: usize,
    },
}

impl RowErrorKind {
    /// A stable code for API bodies (the same as the serde tag).
    pub fn code(&self) -> &'static str {
        match self {
            RowErrorKind::MissingAddress => "missing_address",
            RowErrorKind::InvalidAddress { .. } => "invalid_address",
            RowErrorKind::InvalidAlias { .. } => "invalid_alias",
            RowErrorKind::InvalidEncoding { .. } => "invalid_encoding",
            RowErrorKind::AliasIsPrimary { .. } => "alias_is_primary",
            RowErrorKind::DuplicateAddress { .. } => "duplicate_address",
            RowErrorKind::TooLong { .. } => "too_long",
            RowErrorKind::ControlCharacter { .. } => "control_character",
            RowErrorKind::TooManyCells { .. } => "too_many_cells",
            RowErrorKind::TooFewCells { .. } => "too_few_cells",
        }
    }
}

impl fmt::Display for RowErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowErrorKind::MissingAddress => {
                f.write_str("the address cell is empty: every row needs the user's email address")
            }
            RowErrorKind::InvalidAddress { value, reason } => {
                write!(f, "'{value}' is not a valid email address: {reason}")
            }
            RowErrorKind::InvalidAlias { value, reason } => {
                write!(f, "alias '{value}' is not a valid email address: {reason}")
            }
            RowErrorKind::InvalidEncoding {
                column,
                line,
                position,
                bytes,
            } => write!(
                f,
                "{column} holds {bytes} (line {line}, character {position}), which is not UTF-8 although the rest of the file is: retype that character, or save the file again as 'CSV UTF-8'"
            ),
            RowErrorKind::AliasIsPrimary { address } => write!(
                f,
                "{address} is this row's own address and cannot also be one of its aliases: remove it from the aliases"
            ),
            RowErrorKind::DuplicateAddress {
                address,
                here,
                other_line,
                there,
            } => {
                let role = |r: &AddressRole| match r {
                    AddressRole::Primary => "the address",
                    AddressRole::Alias => "an alias",
                };
                write!(
                    f,
                    "{address} also appears on line {other_line} ({} there, {} here): an address can belong to one user only",
                    role(there),
                    role(here)
                )
            }
            RowErrorKind::TooLong { column, max, len } => write!(
                f,
                "{column} is {len} characters long; at most {max} are allowed"
            ),
            RowErrorKind::ControlCharacter { column, code_point } => {
                let extra = if *column == Column::Notes {
                    ""
                } else {
                    " (line breaks are allowed in notes only)"
                };
                write!(
                    f,
                    "{column} holds the control character {code_point}{extra}: remove it"
                )
            }
            RowErrorKind::TooManyCells { cells, columns } => write!(
                f,
                "the row has {cells} cells but the header has {columns} columns: a value is probably not quoted, or a column is missing in the header"
            ),
            RowErrorKind::TooFewCells { cells, columns } => write!(
                f,
                "the row has {cells} cells but the header has {columns} columns: add the missing separators (an empty cell clears the field)"
            ),
        }
    }
}

/// One error of one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    /// Physical line where the row starts (1 = the first line of the file).
    pub line: u64,
    /// The header name of the cell at fault, as written in the file, when
    /// the error is about one cell.
    pub column: Option<String>,
    /// What is wrong.
    pub kind: RowErrorKind,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(column) => write!(f, "line {}, column '{column}': {}", self.line, self.kind),
            None => write!(f, "line {}: {}", self.line, self.kind),
        }
    }
}

impl std::error::Error for RowError {}
