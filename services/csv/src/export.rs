//! CSV for downloads: user lists, conflicts (D3.m) and the sample file
//! (M2). "Exports never let a cell start a formula."

use std::borrow::Cow;
use std::io::{self, Write};

use roster_events::{Address, Profile};
use serde::{Deserialize, Serialize};

use crate::delimiter::Delimiter;

/// Characters that make a spreadsheet read a cell as a formula (OWASP "CSV
/// injection"), plus their full-width forms, which some Excel locales
/// treat alike.
pub const FORMULA_TRIGGERS: &[char] = &[
    '=', '+', '-', '@', '\t', '\r', '\u{FF1D}', '\u{FF0B}', '\u{FF0D}', '\u{FF20}',
];

/// The escape character put in front of a cell (M2): Excel and the OWASP
/// recommendation use a single quote to say "text, not a formula".
pub const ESCAPE: char = '\'';

/// Makes a cell safe to open in a spreadsheet and exact to import again:
/// a single quote is put in front of it when [`needs_escape`] says so
/// (it starts with a formula character, a quote or a space, ends with a
/// space, or holds a carriage return). Other cells are returned as they
/// are. [`unescape_cell`] (used by [`crate::parse_import`]) removes exactly
/// that quote again, so export, import and export give the same bytes.
pub fn escape_formula(cell: &str) -> Cow<'_, str> {
    if needs_escape(cell) {
        Cow::Owned(format!("{ESCAPE}{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// Whether [`escape_formula`] puts a quote in front of `value`:
/// - its first character is one of [`FORMULA_TRIGGERS`] (a formula), or
///   white space (spaces, and tab and carriage return, which spreadsheets
///   also treat as formula starts, OWASP);
/// - its first character is the [`ESCAPE`] quote itself, so that a stored
///   `'=1+2` comes back with its quote;
/// - it ends with white space, or holds a carriage return anywhere: an
///   import trims cells and turns line breaks in notes into `\n`, and an
///   escaped cell is read exactly as written instead.
pub fn needs_escape(value: &str) -> bool {
    let Some(first) = value.chars().next() else {
        return false;
    };
    FORMULA_TRIGGERS.contains(&first)
        || first == ESCAPE
        || first.is_whitespace()
        || value.ends_with(char::is_whitespace)
        || value.contains('\r')
}

/// A cell of an import file as [`unescape_cell`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellValue<'a> {
    /// The value.
    pub text: &'a str,
    /// Escaped by an export: `text` is exactly the exported value, not
    /// trimmed, its line breaks as they were.
    pub exact: bool,
}

/// Reads an import cell, undoing [`escape_formula`] exactly:
/// - a cell that starts with a quote followed by a value that
///   [`needs_escape`] is that value, exactly (no trimming);
/// - any other cell is trimmed; if it then starts with a quote followed by
///   a formula character or a second quote (written by hand, such as
///   `'+49 30 1234`), the quote is removed.
///
/// Cells that do not start with a quote are only trimmed, so a name such
/// as `'t Hooft` keeps its quote.
pub fn unescape_cell(raw: &str) -> CellValue<'_> {
    if let Some(rest) = raw.strip_prefix(ESCAPE) {
        if needs_escape(rest) {
            return CellValue {
                text: rest,
                exact: true,
            };
        }
    }
    let trimmed = raw.trim();
    let text = match trimmed.strip_prefix(ESCAPE) {
        Some(rest)
            if rest
                .chars()
                .next()
                .is_some_and(|c| FORMULA_TRIGGERS.contains(&c) || c == ESCAPE) =>
        {
            rest
        }
        _ => trimmed,
    };
    CellValue { text, exact: false }
}

/// How to write a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportOptions {
    /// Start with a UTF-8 byte-order mark. Excel opens UTF-8 CSV correctly
    /// (accents, €) only with one; other programs ignore it. Default: on.
    pub bom: bool,
    /// The delimiter. Default: comma.
    pub delimiter: Delimiter,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            bom: true,
            delimiter: Delimiter::Comma,
        }
    }
}

/// Writes CSV records: UTF-8, CRLF line endings, cells quoted when they
/// hold the delimiter, a quote or a line break (quotes doubled), and every
/// cell passed through [`escape_formula`].
pub struct CsvWriter<W: Write> {
    inner: csv::Writer<W>,
}

impl<W: Write> CsvWriter<W> {
    /// A writer into `out`; writes the BOM at once when `options.bom`.
    pub fn new(mut out: W, options: &ExportOptions) -> io::Result<Self> {
        if options.bom {
            out.write_all("\u{FEFF}".as_bytes())?;
        }
        let inner = csv::WriterBuilder::new()
            .delimiter(options.delimiter.as_byte())
            .terminator(csv::Terminator::CRLF)
            .quote_style(csv::QuoteStyle::Necessary)
            .flexible(true)
            .from_writer(out);
        Ok(Self { inner })
    }

    /// Writes one record (a header or a row).
    pub fn write_record<I, S>(&mut self, cells: I) -> io::Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for cell in cells {
            self.inner
                .write_field(escape_formula(cell.as_ref()).as_bytes())
                .map_err(io::Error::from)?;
        }
        self.inner
            .write_record(None::<&[u8]>)
            .map_err(io::Error::from)
    }

    /// Writes the canonical user header ([`USER_HEADER`]).
    pub fn write_user_header(&mut self) -> io::Result<()> {
        self.write_record(USER_HEADER)
    }

    /// Writes one user in the columns of [`USER_HEADER`]; aliases are
    /// joined with `"; "`.
    pub fn write_user(&mut self, user: &UserRecord<'_>) -> io::Result<()> {
        let aliases = user
            .aliases
            .iter()
            .map(Address::as_str)
            .collect::<Vec<_>>()
            .join("; ");
        let p = user.profile;
        fn field(v: &Option<String>) -> &str {
            v.as_deref().unwrap_or_default()
        }
        self.write_record([
            user.address.as_str(),
            field(&p.first_name),
            field(&p.last_name),
            &aliases,
            field(&p.home_phone),
            field(&p.mobile),
            field(&p.company),
            field(&p.department),
            field(&p.notes),
        ])
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(self) -> io::Result<W> {
        self.inner
            .into_inner()
            .map_err(|e| io::Error::new(e.error().kind(), e.error().to_string()))
    }
}

/// The canonical header of user exports and of the sample: the names of
/// [`Column::ALL`](crate::Column::ALL), which an import maps back one to one.
pub const USER_HEADER: [&str; 9] = [
    "email",
    "first_name",
    "last_name",
    "aliases",
    "home_phone",
    "mobile",
    "company",
    "department",
    "notes",
];

/// One user to export.
#[derive(Debug, Clone, Copy)]
pub struct UserRecord<'a> {
    /// The primary address.
    pub address: &'a Address,
    /// The aliases.
    pub aliases: &'a [Address],
    /// The profile fields.
    pub profile: &'a Profile,
}

/// A whole user list as CSV bytes: header, then one row per user.
pub fn users_csv<'a>(
    users: impl IntoIterator<Item = UserRecord<'a>>,
    options: &ExportOptions,
) -> Vec<u8> {
    let mut writer = CsvWriter::new(Vec::new(), options).expect("writing to memory cannot fail");
    writer
        .write_user_header()
        .expect("writing to memory cannot fail");
    for user in users {
        writer
            .write_user(&user)
            .expect("writing to memory cannot fail");
    }
    writer.into_inner().expect("writing to memory cannot fail")
}

/// The sample CSV offered for download (M2), for the managed `domain`
/// (pass it in its ASCII form, as [`roster_events::Domain::as_str`] gives
/// it): the canonical header and three users, one with two aliases and one
/// with a multi-line quoted note. UTF-8 with BOM (so that Excel shows the
/// accented name right), comma-separated, CRLF line endings. It reads back
/// with [`crate::parse_import`] without errors or warnings.
pub fn sample_csv(domain: &str) -> String {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let rows: [[String; 9]; 3] = [
        [
            format!("jane.doe@{domain}"),
            "Jane".into(),
            "Doe".into(),
            format!("j.doe@{domain}; jane@{domain}"),
            "(212) 555-0143".into(),
            "(917) 555-0188".into(),
            "Example Corp".into(),
            "Sales".into(),
            String::new(),
        ],
        [
            format!("rene.mueller@{domain}"),
            "René".into(),
            "Müller".into(),
            String::new(),
            String::new(),
            "0170 5550123".into(),
            "Example Corp".into(),
            "Finance, Controlling".into(),
            "Works part-time.\nAway on Fridays; ask \"Jane\" instead.".into(),
        ],
        [
            format!("it.support@{domain}"),
            "IT".into(),
            "Support".into(),
            String::new(),
            String::new(),
            String::new(),
            "Example Corp".into(),
            "IT".into(),
            "Shared mailbox".into(),
        ],
    ];
    let mut writer =
        CsvWriter::new(Vec::new(), &ExportOptions::default()).expect("writing to memory");
    writer.write_user_header().expect("writing to memory");
    for row in rows {
        writer.write_record(row).expect("writing to memory");
    }
    let bytes = writer.into_inner().expect("writing to memory");
    String::from_utf8(bytes).expect("the writer writes the UTF-8 it is given")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::Column;

    fn to_string(rows: &[&[&str]], options: &ExportOptions) -> String {
        let mut w = CsvWriter::new(Vec::new(), options).unwrap();
        for row in rows {
            w.write_record(row.iter()).unwrap();
        }
        String::from_utf8(w.into_inner().unwrap()).unwrap()
    }

    #[test]
    fn m2_export_cells_never_start_a_formula() {
        for (cell, want) in [
            ("=1+2", "'=1+2"),
            ("+49 30 1234", "'+49 30 1234"),
            ("-5", "'-5"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("  =cmd|' /C calc'!A0", "'  =cmd|' /C calc'!A0"),
            ("\u{FF1D}1+1", "'\u{FF1D}1+1"),
            ("a=b", "a=b"),
            ("jane@example.com", "jane@example.com"),
            ("", ""),
        ] {
            assert_eq!(escape_formula(cell), want, "{cell:?}");
        }
    }

    /// Values that a careless export or import would change (OWASP CSV
    /// injection starts, the escape quote itself, spaces, line breaks).
    const HOSTILE: &[&str] = &[
        "=1+2",
        "+44 20 7946 0000",
        "-5",
        "@SUM(A1)",
        "\tx",
        "\rx",
        "\r\nx",
        "x\r\ny",
        "x\ry",
        "'=1+2",
        "'+44 20 7946 0000",
        "'-x",
        "'@x",
        "'\tx",
        "''=x",
        "''",
        "'",
        "'it's fine",
        "'t Hooft",
        "it's",
        "  =cmd|' /C calc'!A0",
        " lead",
        "trail ",
        "trail\t",
        "\u{A0}nbsp",
        "\u{FF1D}1+1",
        "\u{FF0B}1",
        "\u{FF0D}1",
        "\u{FF20}x",
        "a=b",
        "a,b",
        "say \"hi\"",
        "two\nlines",
        "=",
        "-",
        "plain",
        "",
        "-info@example.com",
        "'-info@example.com",
        "-a@example.com; b@example.com",
    ];

    #[test]
    fn m2_import_undoes_exactly_what_export_did() {
        for &value in HOSTILE {
            let cell = escape_formula(value);
            assert!(
                !cell.starts_with(FORMULA_TRIGGERS),
                "{value:?} is written as {cell:?}, a formula"
            );
            assert_eq!(unescape_cell(&cell).text, value, "{value:?} via {cell:?}");
            // Escaping is needed exactly when reading the value as written
            // would change it.
            if !needs_escape(value) {
                assert_eq!(cell, value);
                assert_eq!(unescape_cell(value).text, value);
            }
        }
    }

    #[test]
    fn m2_hand_written_cells_are_trimmed_and_lose_a_quote_before_a_formula_character() {
        for (raw, want, exact) in [
            ("'+49 30 1234", "+49 30 1234", true),
            ("  '+49 30 1234  ", "+49 30 1234", false),
            ("''=x", "'=x", true),
            ("'it's fine", "'it's fine", false),
            ("'t Hooft", "'t Hooft", false),
            ("  Ann  ", "Ann", false),
            ("'Ann ", "Ann ", true),
            ("'", "'", false),
            ("", "", false),
        ] {
            assert_eq!(
                unescape_cell(raw),
                CellValue { text: want, exact },
                "{raw:?}"
            );
        }
    }

    #[test]
    fn m2_export_quotes_delimiters_quotes_and_newlines_with_crlf() {
        let out = to_string(
            &[&["a,b", "say \"hi\"", "two\nlines", "=x"]],
            &ExportOptions {
                bom: false,
                ..ExportOptions::default()
            },
        );
        assert_eq!(out, "\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",'=x\r\n");
    }

    #[test]
    fn m2_export_bom_is_optional() {
        let with = to_string(&[&["x"]], &ExportOptions::default());
        assert_eq!(with, "\u{FEFF}x\r\n");
        let without = to_string(
            &[&["x"]],
            &ExportOptions {
                bom: false,
                delimiter: Delimiter::Semicolon,
            },
        );
        assert_eq!(without, "x\r\n");
    }

    #[test]
    fn header_is_the_canonical_column_names() {
        assert_eq!(USER_HEADER, Column::ALL.map(Column::name));
    }
}
