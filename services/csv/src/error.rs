//! File-level errors and warnings, and per-row errors. Every message says
//! what to fix; every kind has a stable `code` for API error bodies.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::columns::Column;
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
    /// not a CSV file at all, or one with an unsupported separator.
    #[error(
        "the file does not look like CSV: its first line, '{first_line}', is not separated by commas, semicolons or tabs and is not an address column header ({accepted})",
        accepted = Column::Email.accepted_names().join(", ")
    )]
    NotCsv {
        /// The first line, shortened.
        first_line: String,
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
    /// The bytes are not in the encoding the caller named.
    #[error(
        "the file is not valid {encoding} (first bad character on line {line}): save it again as UTF-8, or choose the encoding it was saved in"
    )]
    InvalidEncoding {
        /// The encoding named by the caller.
        encoding: Encoding,
        /// The line of the first invalid byte sequence.
        line: u64,
    },
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

fn quote_list(items: &[String]) -> String {
    if items.iter().all(|s| s.is_empty()) {
        return "no column names".to_string();
    }
    items
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
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
        /// The value as written.
        value: String,
        /// Why, from [`roster_events::Address::parse`].
        reason: String,
    },
    /// An alias does not parse.
    InvalidAlias {
        /// The value as written.
        value: String,
        /// Why, from [`roster_events::Address::parse`].
        reason: String,
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
            // `reason` is the whole IdError message, which names the value.
            RowErrorKind::InvalidAddress { reason, .. } => f.write_str(reason),
            RowErrorKind::InvalidAlias { reason, .. } => write!(f, "alias {reason}"),
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
