//! Reading an import file into typed rows (M2).

use std::collections::hash_map::{Entry, HashMap};

use roster_events::{Address, IdError};
use serde::{Deserialize, Serialize};

use crate::aliases::split_aliases;
use crate::columns::{Column, HeaderCell};
use crate::delimiter::{detect_delimiter, Delimiter};
use crate::encoding::{decode, Decoded, Encoding, EncodingChoice, InvalidSequence};
use crate::error::{
    echo, AddressRole, ChosenDelimiter, FileError, FileWarning, RowError, RowErrorKind,
};
use crate::export::{unescape_cell, CellValue};
use crate::patch::ProfilePatch;

/// Default of [`ImportOptions::max_bytes`]: 64 MiB.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Default of [`ImportOptions::max_rows`]: 500,000 user rows.
pub const DEFAULT_MAX_ROWS: usize = 500_000;

/// How to read an import file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportOptions {
    /// The encoding, or [`EncodingChoice::Auto`] to detect it.
    pub encoding: EncodingChoice,
    /// The delimiter, or `None` to detect it (a first line `sep=;`, as
    /// Excel writes it, also names it).
    pub delimiter: Option<Delimiter>,
    /// Largest input accepted, in bytes.
    pub max_bytes: usize,
    /// Most user rows accepted (blank lines and the header do not count).
    pub max_rows: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            encoding: EncodingChoice::Auto,
            delimiter: None,
            max_bytes: DEFAULT_MAX_BYTES,
            max_rows: DEFAULT_MAX_ROWS,
        }
    }
}

/// A file read into rows: how it was read, and every data row's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportFile {
    /// The encoding used.
    pub encoding: Encoding,
    /// Whether the file started with a byte-order mark.
    pub bom: bool,
    /// The delimiter used.
    pub delimiter: Delimiter,
    /// The physical line of the header (1 unless blank lines or a `sep=`
    /// line come first).
    pub header_line: u64,
    /// The header cells in file order, with the column each maps to.
    pub header: Vec<HeaderCell>,
    /// Things accepted that may not be what the person meant.
    pub warnings: Vec<FileWarning>,
    /// One outcome per data row, in file order. Blank lines have none.
    pub rows: Vec<RowOutcome>,
    /// Rows after the header whose cells are all empty (a spreadsheet's
    /// `,,,,` lines), ignored. Empty lines are not rows and are not counted.
    #[serde(default)]
    pub blank_rows: u64,
}

/// The outcome of one data row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RowOutcome {
    /// Every check done here passed.
    Parsed(ParsedRow),
    /// At least one check failed.
    Rejected(RejectedRow),
}

/// A row that passed every check of this crate. Checks that need the
/// database (managed domain, owner of each address, seat limit, directory
/// users) are left to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParsedRow {
    /// Physical line where the row starts (1 = the first line of the file).
    pub line: u64,
    /// The primary address, normalised.
    pub address: Address,
    /// The aliases, normalised, without duplicates, in file order. `None`
    /// when the file has no aliases column (leave aliases unchanged);
    /// `Some(vec![])` when the cell is empty.
    pub aliases: Option<Vec<Address>>,
    /// The profile fields the row sets or clears.
    pub profile: ProfilePatch,
}

/// A row that failed a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRow {
    /// Physical line where the row starts.
    pub line: u64,
    /// The address to show with the errors: the normalised address when it
    /// is valid, else the address cell as written, trimmed (empty when
    /// the cell is).
    pub address_text: String,
    /// The primary address when it is valid.
    pub address: Option<Address>,
    /// The aliases that are valid (an alias column's errors are in `errors`).
    pub aliases: Vec<Address>,
    /// Every error found, at least one: the checks of single cells in
    /// column order, then addresses already used on earlier lines.
    pub errors: Vec<RowError>,
}

impl RowOutcome {
    /// Physical line where the row starts.
    pub fn line(&self) -> u64 {
        match self {
            RowOutcome::Parsed(r) => r.line,
            RowOutcome::Rejected(r) => r.line,
        }
    }

    /// The primary address, when it is valid.
    pub fn address(&self) -> Option<&Address> {
        match self {
            RowOutcome::Parsed(r) => Some(&r.address),
            RowOutcome::Rejected(r) => r.address.as_ref(),
        }
    }

    /// The row when it passed.
    pub fn parsed(&self) -> Option<&ParsedRow> {
        match self {
            RowOutcome::Parsed(r) => Some(r),
            RowOutcome::Rejected(_) => None,
        }
    }

    /// The errors (empty when the row passed).
    pub fn errors(&self) -> &[RowError] {
        match self {
            RowOutcome::Parsed(_) => &[],
            RowOutcome::Rejected(r) => &r.errors,
        }
    }
}

impl ImportFile {
    /// Whether the file has a column for `column`.
    pub fn has_column(&self, column: Column) -> bool {
        self.header.iter().any(|h| h.column == Some(column))
    }

    /// The rows that passed.
    pub fn parsed_rows(&self) -> impl Iterator<Item = &ParsedRow> {
        self.rows.iter().filter_map(RowOutcome::parsed)
    }

    /// The rows that failed.
    pub fn rejected_rows(&self) -> impl Iterator<Item = &RejectedRow> {
        self.rows.iter().filter_map(|r| match r {
            RowOutcome::Rejected(r) => Some(r),
            RowOutcome::Parsed(_) => None,
        })
    }

    /// Every row error, in file order.
    pub fn errors(&self) -> impl Iterator<Item = &RowError> {
        self.rows.iter().flat_map(RowOutcome::errors)
    }

    /// Every address of the rows that passed, with its line and role: what
    /// the database checks need (managed domain, owner, U1).
    pub fn addresses(&self) -> impl Iterator<Item = (u64, AddressRole, &Address)> {
        self.parsed_rows().flat_map(|row| {
            std::iter::once((row.line, AddressRole::Primary, &row.address)).chain(
                row.aliases
                    .iter()
                    .flatten()
                    .map(move |a| (row.line, AddressRole::Alias, a)),
            )
        })
    }
}

/// Reads an import file: decodes it, detects the delimiter, maps the header
/// and checks every row. Pasted text is passed as its UTF-8 bytes.
///
/// Returns `Err` only when the file as a whole cannot be read (see
/// [`FileError`]); otherwise every data row has an outcome in
/// [`ImportFile::rows`], valid or not. A header without rows gives zero rows.
pub fn parse_import(bytes: &[u8], options: &ImportOptions) -> Result<ImportFile, FileError> {
    let decoded = read_text(bytes, options)?;
    let text: &str = &decoded.text;

    // Excel's "sep=;" first line names the delimiter.
    let (sep, body, first_line) = match sep_line(text) {
        Some((delimiter, rest)) => (Some(delimiter), rest, 2),
        None => (None, text, 1),
    };
    let chosen = options.delimiter.or(sep);
    let delimiter = chosen.unwrap_or_else(|| detect_delimiter(body));
    // Invalid UTF-8 sequences, by offset in `body` (a suffix of `text`).
    let shift = text.len() - body.len();
    let mut invalid = decoded
        .invalid
        .iter()
        .skip_while(|s| s.offset < shift)
        .peekable();

    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter.as_byte())
        .from_reader(body.as_bytes());
    let mut lines = LineCounter::new(body.as_bytes(), first_line);
    let mut record = csv::StringRecord::new();
    let mut last_record_start = 0;
    let mut state: Option<RowParser> = None;
    let mut header_line = first_line;
    let mut blank_rows = 0u64;
    // One outcome per line at most (multi-line cells make it fewer): one
    // allocation instead of a doubling series of copies.
    let line_count = body.bytes().filter(|&b| b == b'\n').count() + 1;
    let mut rows = Vec::with_capacity(line_count.min(options.max_rows));

    loop {
        let more = reader.read_record(&mut record).map_err(|_| {
            // The text is UTF-8 already: not expected to happen.
            FileError::InvalidEncoding {
                encoding: decoded.encoding,
                line: lines.line_at(reader.position().byte() as usize),
                column: 1,
                bytes: "a byte sequence".into(),
                declared: true,
            }
        })?;
        if !more {
            break;
        }
        let offset = record.position().map_or(0, |p| p.byte() as usize);
        let start = lines.skip_line_breaks(offset);
        last_record_start = start;
        // The invalid sequences of this record (a blank one has none).
        let end = reader.position().byte() as usize;
        let mut in_record = Vec::new();
        while let Some(sequence) = invalid.next_if(|s| s.offset - shift < end) {
            in_record.push(sequence);
        }
        if record.iter().all(|cell| cell.trim().is_empty()) {
            if state.is_some() && !record.is_empty() && record.len() > 1 {
                blank_rows += 1;
            }
            continue;
        }
        let at = RecordAt {
            body,
            start,
            shift,
            delimiter,
            line: lines.line_at(start),
        };
        match &mut state {
            None => {
                // Invalid bytes in the header only spoil names of columns
                // that are then unknown (and reported as such).
                header_line = at.line;
                match RowParser::new(&record) {
                    Ok(parser) => state = Some(parser),
                    Err(e) => {
                        let by_sep_line = options.delimiter.is_none() && sep.is_some();
                        return Err(at.header_failure(e, &mut lines, chosen, by_sep_line));
                    }
                }
            }
            Some(parser) => {
                if rows.len() == options.max_rows {
                    return Err(FileError::TooManyRows {
                        limit: options.max_rows,
                        line: at.line,
                    });
                }
                rows.push(at.row(parser, &record, &in_record));
            }
        }
    }
    if let Some(open) = unterminated_quote(body.as_bytes(), last_record_start, delimiter) {
        return Err(FileError::UnterminatedQuote {
            line: lines.line_at(open),
        });
    }
    let Some(parser) = state else {
        return Err(FileError::Empty);
    };
    reject_reused_addresses(&mut rows, &parser);
    let mut file = ImportFile::assemble(&decoded, delimiter, header_line, parser, rows);
    file.blank_rows = blank_rows;
    Ok(file)
}

impl ImportFile {
    /// The file read: its rows with the parser's header and warnings.
    fn assemble(
        decoded: &Decoded,
        delimiter: Delimiter,
        header_line: u64,
        parser: RowParser,
        mut rows: Vec<RowOutcome>,
    ) -> ImportFile {
        let mut warnings = parser.warnings;
        if decoded.utf8_characters > 0 {
            warnings.push(FileWarning::MixedEncoding {
                characters: decoded.utf8_characters,
            });
        }
        if rows.capacity() > rows.len() + rows.len() / 4 + 16 {
            // Many blank lines or multi-line cells: give the excess back, as
            // the result may be kept for a while (review, then save).
            rows.shrink_to_fit();
        }
        ImportFile {
            encoding: decoded.encoding,
            bom: decoded.bom,
            delimiter,
            header_line,
            header: parser.header,
            warnings,
            rows,
            blank_rows: 0,
        }
    }
}

/// The whole file as text, or why it cannot be read as one: too large, a
/// known binary format, an encoding that does not decode, or nothing
/// but blanks.
fn read_text<'a>(bytes: &'a [u8], options: &ImportOptions) -> Result<Decoded<'a>, FileError> {
    if bytes.len() > options.max_bytes {
        return Err(FileError::TooLarge {
            size: bytes.len(),
            limit: options.max_bytes,
        });
    }
    if let Some(what) = known_binary_format(bytes) {
        return Err(FileError::Binary { what });
    }
    let decoded = match decode(bytes, options.encoding) {
        Ok(decoded) => decoded,
        // Neither UTF-8 nor Windows-1252: binary data is the likelier story.
        Err(
            e @ FileError::InvalidEncoding {
                declared: false, ..
            },
        ) => {
            let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
            return Err(binary_content(&text).map_or(e, binary_error));
        }
        Err(e) => return Err(e),
    };
    if decoded
        .text
        .trim_matches(|c: char| c.is_whitespace() || c == '\u{FEFF}')
        .is_empty()
    {
        return Err(FileError::Empty);
    }
    if let Some(line) = binary_content(&decoded.text) {
        return Err(binary_error(line));
    }
    Ok(decoded)
}

/// Where a record stands in the body, to name the cell an invalid byte
/// sequence is in.
struct RecordAt<'a> {
    body: &'a str,
    /// The record's first byte in `body`.
    start: usize,
    /// How far `body` starts into the decoded text (after a `sep=` line).
    shift: usize,
    delimiter: Delimiter,
    line: u64,
}

impl RecordAt<'_> {
    /// A header that swallowed the file behind an open quote fails for
    /// that reason, not for its odd names.
    fn header_failure(
        &self,
        e: FileError,
        lines: &mut LineCounter,
        chosen: Option<Delimiter>,
        by_sep_line: bool,
    ) -> FileError {
        match unterminated_quote(self.body.as_bytes(), self.start, self.delimiter) {
            Some(open) => FileError::UnterminatedQuote {
                line: lines.line_at(open),
            },
            None => not_csv_with(e, chosen, by_sep_line, self.body),
        }
    }

    /// The outcome of a data row; its invalid byte sequences come first
    /// among its errors, since they explain the others.
    fn row(
        &self,
        parser: &mut RowParser,
        record: &csv::StringRecord,
        in_record: &[&InvalidSequence],
    ) -> RowOutcome {
        let mut row = parser.parse(record, self.line);
        let errors = self.invalid_cells(parser, in_record);
        if !errors.is_empty() {
            let rejected = into_rejected(&mut row);
            rejected.errors.splice(0..0, errors);
        }
        row
    }

    /// One error per invalid sequence of the record, in a known column.
    fn invalid_cells(&self, parser: &RowParser, in_record: &[&InvalidSequence]) -> Vec<RowError> {
        in_record
            .iter()
            .filter_map(|s| {
                let field = field_index_at(
                    self.body.as_bytes(),
                    self.start,
                    s.offset - self.shift,
                    self.delimiter,
                );
                let column = parser.header.get(field)?.column?;
                let kind = RowErrorKind::InvalidEncoding {
                    column,
                    line: s.line,
                    position: s.column,
                    bytes: s.hex(),
                };
                Some(parser.error(self.line, Some(column), kind))
            })
            .collect()
    }
}

/// U1 within the file: an address, primary or alias, may appear once. The
/// first line that has it keeps it; every later one gets an error naming
/// both lines. A pass after reading, so that the map borrows the addresses
/// instead of copying them.
fn reject_reused_addresses(rows: &mut [RowOutcome], parser: &RowParser) {
    fn addresses(row: &RowOutcome) -> (Option<&Address>, &[Address]) {
        match row {
            RowOutcome::Parsed(r) => (Some(&r.address), r.aliases.as_deref().unwrap_or(&[])),
            RowOutcome::Rejected(r) => (r.address.as_ref(), &r.aliases),
        }
    }
    let count = rows
        .iter()
        .map(|row| {
            let (primary, aliases) = addresses(row);
            usize::from(primary.is_some()) + aliases.len()
        })
        .sum();
    let mut seen: HashMap<&str, (u64, AddressRole)> = HashMap::with_capacity(count);
    let mut reused: Vec<(usize, RowError)> = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let line = row.line();
        let (primary, aliases) = addresses(row);
        let all = primary
            .map(|a| (AddressRole::Primary, a))
            .into_iter()
            .chain(aliases.iter().map(|a| (AddressRole::Alias, a)));
        for (here, address) in all {
            match seen.entry(address.as_str()) {
                Entry::Vacant(slot) => {
                    slot.insert((line, here));
                }
                Entry::Occupied(slot) => {
                    let (other_line, there) = *slot.get();
                    let column = match here {
                        AddressRole::Primary => Column::Email,
                        AddressRole::Alias => Column::Aliases,
                    };
                    let kind = RowErrorKind::DuplicateAddress {
                        address: address.to_string(),
                        here,
                        other_line,
                        there,
                    };
                    reused.push((index, parser.error(line, Some(column), kind)));
                }
            }
        }
    }
    drop(seen);
    for (index, error) in reused {
        into_rejected(&mut rows[index]).errors.push(error);
    }
}

/// The row as a rejected one (a parsed row becomes one without errors yet),
/// to add errors found after it was read.
fn into_rejected(row: &mut RowOutcome) -> &mut RejectedRow {
    if let RowOutcome::Parsed(_) = row {
        let placeholder = RowOutcome::Rejected(RejectedRow {
            line: 0,
            address_text: String::new(),
            address: None,
            aliases: Vec::new(),
            errors: Vec::new(),
        });
        if let RowOutcome::Parsed(parsed) = std::mem::replace(row, placeholder) {
            *row = RowOutcome::Rejected(RejectedRow {
                line: parsed.line,
                address_text: parsed.address.to_string(),
                address: Some(parsed.address),
                aliases: parsed.aliases.unwrap_or_default(),
                errors: Vec::new(),
            });
        }
    }
    match row {
        RowOutcome::Rejected(rejected) => rejected,
        RowOutcome::Parsed(_) => unreachable!("replaced above"),
    }
}

/// A header that is one cell names the separator that was chosen (by the
/// request or a `sep=` line), and one the first line does use.
fn not_csv_with(
    e: FileError,
    chosen: Option<Delimiter>,
    by_sep_line: bool,
    body: &str,
) -> FileError {
    match (e, chosen) {
        (FileError::NotCsv { first_line, .. }, Some(delimiter)) => {
            let line = body.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            let fits = Some(detect_delimiter(body))
                .filter(|d| *d != delimiter && line.contains(d.as_char()))
                .or_else(|| {
                    Delimiter::ALL
                        .into_iter()
                        .find(|d| *d != delimiter && line.contains(d.as_char()))
                });
            FileError::NotCsv {
                first_line,
                delimiter: Some(ChosenDelimiter {
                    delimiter,
                    by_sep_line,
                    fits,
                }),
            }
        }
        (e, _) => e,
    }
}

/// The index of the cell of the record starting at `start` that holds the
/// byte at `at`. Follows csv's rules: a quote opens a quoted cell only as
/// the first character of the cell.
fn field_index_at(text: &[u8], start: usize, at: usize, delimiter: Delimiter) -> usize {
    #[derive(Clone, Copy)]
    enum S {
        CellStart,
        Unquoted,
        Quoted,
        /// After a quote inside a quoted cell: closed, or the first of "".
        QuoteInQuoted,
    }
    let delimiter = delimiter.as_byte();
    let mut field = 0;
    let mut state = S::CellStart;
    for &b in &text[start.min(at)..at] {
        state = match state {
            S::CellStart | S::Unquoted | S::QuoteInQuoted if b == delimiter => {
                field += 1;
                S::CellStart
            }
            S::CellStart if b == b'"' => S::Quoted,
            S::Quoted if b == b'"' => S::QuoteInQuoted,
            S::Quoted => S::Quoted,
            S::QuoteInQuoted if b == b'"' => S::Quoted,
            S::CellStart | S::Unquoted | S::QuoteInQuoted => S::Unquoted,
        };
    }
    field
}

/// Signatures of formats people upload by mistake, and what to do instead.
fn known_binary_format(bytes: &[u8]) -> Option<String> {
    const SAVE_AS: &str = "open it in the spreadsheet program and save it as 'CSV UTF-8 (Comma delimited)' (or 'CSV'), then upload that file";
    let what = if bytes.starts_with(b"PK\x03\x04") {
        "it is a ZIP archive, such as an Excel workbook (.xlsx) or an OpenDocument spreadsheet (.ods)"
    } else if bytes.starts_with(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1") {
        "it is an Excel 97-2003 workbook (.xls)"
    } else if bytes.starts_with(b"%PDF") {
        return Some(
            "it is a PDF document: export the user list as CSV from the program it came from"
                .to_string(),
        );
    } else {
        return None;
    };
    Some(format!("{what}: {SAVE_AS}"))
}

fn binary_error(line: u64) -> FileError {
    FileError::Binary {
        what: format!(
            "it holds binary data (zero bytes or control characters, first on line {line}); save the user list as CSV or tab-separated text"
        ),
    }
}

/// The line of the first control character (zero bytes included) when the
/// sample has many: text never has them, binary files always do. A few in
/// an otherwise textual file are the cells' problem, reported as row errors
/// naming the column (issue 10).
fn binary_content(text: &str) -> Option<u64> {
    let mut end = text.len().min(8192);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let sample = &text[..end];
    let is_odd = |c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0C');
    let (mut chars, mut odd, mut first) = (0usize, 0usize, None);
    for (i, c) in sample.char_indices() {
        chars += 1;
        if is_odd(c) {
            odd += 1;
            first.get_or_insert(i);
        }
    }
    (odd >= 4 && odd * 50 > chars).then(|| line_of(sample, first.unwrap_or(0)))
}

fn line_of(text: &str, offset: usize) -> u64 {
    LineCounter::new(text.as_bytes(), 1).line_at(offset)
}

/// A first line `sep=;` (or `,` or a tab): the delimiter and the text after it.
fn sep_line(text: &str) -> Option<(Delimiter, &str)> {
    let end = text.find('\n').map_or(text.len(), |i| i + 1);
    let line = text[..end].trim_end_matches(['\r', '\n']);
    let value = line.strip_prefix("sep=").or(line.strip_prefix("SEP="))?;
    let mut chars = value.chars();
    let delimiter = Delimiter::from_char(chars.next()?)?;
    chars.next().is_none().then_some((delimiter, &text[end..]))
}

/// Physical line numbers from byte offsets that only move forward. `\n`,
/// `\r\n` and a lone `\r` each end a line.
struct LineCounter<'a> {
    text: &'a [u8],
    pos: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a [u8], first_line: u64) -> Self {
        Self {
            text,
            pos: 0,
            line: first_line,
        }
    }

    /// The first offset from `offset` on that is not a line break: csv
    /// reports a record's position before the blank lines and line-break
    /// bytes it skips.
    fn skip_line_breaks(&self, mut offset: usize) -> usize {
        while matches!(self.text.get(offset), Some(b'\r' | b'\n')) {
            offset += 1;
        }
        offset
    }

    fn line_at(&mut self, offset: usize) -> u64 {
        let offset = offset.min(self.text.len());
        if offset > self.pos {
            let span = &self.text[self.pos..offset];
            let before = self.pos.checked_sub(1).map_or(0, |i| self.text[i]);
            // A line ends at every `\r`, and at every `\n` not after a `\r`.
            let ends = |b: u8, prev: u8| usize::from(b == b'\r' || (b == b'\n' && prev != b'\r'));
            // Zipping two slices (not a running state) lets the loop vectorise.
            let breaks = ends(span[0], before)
                + span[1..]
                    .iter()
                    .zip(span)
                    .map(|(&b, &prev)| ends(b, prev))
                    .sum::<usize>();
            self.line += breaks as u64;
            self.pos = offset;
        }
        self.line
    }
}

/// The offset of the opening quote when the text from `start` (the start of
/// the last record) ends inside a quoted cell. Follows csv's rules: a quote
/// opens a quoted cell only as the first character of the cell.
fn unterminated_quote(text: &[u8], start: usize, delimiter: Delimiter) -> Option<usize> {
    #[derive(Clone, Copy)]
    enum S {
        CellStart,
        Unquoted,
        /// Inside a quoted cell opened at this offset.
        Quoted(usize),
        /// After a quote inside a quoted cell: closed, or the first of "".
        QuoteInQuoted(usize),
    }
    let delimiter = delimiter.as_byte();
    let ends_cell = |b: u8| b == delimiter || b == b'\n' || b == b'\r';
    let mut state = S::CellStart;
    for (i, &b) in text.iter().enumerate().skip(start) {
        state = match state {
            S::CellStart if b == b'"' => S::Quoted(i),
            S::CellStart | S::Unquoted if ends_cell(b) => S::CellStart,
            S::CellStart | S::Unquoted => S::Unquoted,
            S::Quoted(at) if b == b'"' => S::QuoteInQuoted(at),
            S::Quoted(at) => S::Quoted(at),
            S::QuoteInQuoted(at) if b == b'"' => S::Quoted(at),
            S::QuoteInQuoted(_) if ends_cell(b) => S::CellStart,
            S::QuoteInQuoted(_) => S::Unquoted,
        };
    }
    match state {
        S::Quoted(at) => Some(at),
        _ => None,
    }
}

/// The header mapping, and what it has to say about the file.
struct RowParser {
    header: Vec<HeaderCell>,
    /// Where each column is, by [`Column`] order.
    positions: [Option<usize>; Column::ALL.len()],
    warnings: Vec<FileWarning>,
    /// Unnamed columns not yet reported as holding values.
    unnamed: Vec<usize>,
}

impl RowParser {
    fn new(record: &csv::StringRecord) -> Result<Self, FileError> {
        let names = || {
            record
                .iter()
                .map(|cell| cell.trim_start_matches('\u{FEFF}').trim())
        };
        // Names are kept (and echoed) shortened: a header cell can be huge.
        let mut header: Vec<HeaderCell> = names()
            .map(|name| HeaderCell {
                column: Column::from_header(name),
                name: echo(name).into_owned(),
            })
            .collect();
        let mut warnings = Vec::new();
        let mut positions: [Option<usize>; Column::ALL.len()] = [None; Column::ALL.len()];
        let mut unnamed = Vec::new();
        for i in 0..header.len() {
            let cell = &header[i];
            let Some(column) = cell.column else {
                if cell.name.is_empty() {
                    unnamed.push(i);
                } else {
                    warnings.push(FileWarning::UnknownColumn {
                        name: cell.name.clone(),
                        position: i + 1,
                    });
                }
                continue;
            };
            // A generic name yields to a specific one for the same column.
            let specific = || {
                header
                    .iter()
                    .find(|h| h.column == Some(column) && !Column::is_weak_name(&h.name))
            };
            if Column::is_weak_name(&cell.name) {
                if let Some(used) = specific() {
                    warnings.push(FileWarning::ShadowedColumn {
                        name: cell.name.clone(),
                        position: i + 1,
                        used: used.name.clone(),
                        column,
                    });
                    header[i].column = None;
                    continue;
                }
            }
            let slot = &mut positions[column as usize];
            if let Some(first) = *slot {
                return Err(FileError::DuplicateColumn {
                    column,
                    first: header[first].name.clone(),
                    second: cell.name.clone(),
                });
            }
            *slot = Some(i);
        }
        if positions[Column::Email as usize].is_none() {
            if let Some(address) = names().find_map(|name| Address::parse(strip_smtp(name)).ok()) {
                return Err(FileError::MissingHeader {
                    address: address.to_string(),
                });
            }
            if header.len() == 1 {
                let mut first_line: String = header[0].name.chars().take(80).collect();
                if first_line.len() < header[0].name.len() {
                    first_line.push('…');
                }
                return Err(FileError::NotCsv {
                    first_line,
                    delimiter: None,
                });
            }
            return Err(FileError::NoAddressColumn {
                found: header.into_iter().map(|h| h.name).collect(),
            });
        }
        Ok(Self {
            header,
            positions,
            warnings,
            unnamed,
        })
    }

    /// The cell of `column` as [`unescape_cell`] reads it (trimmed, or
    /// exactly as an export escaped it), `None` when the file has no such
    /// column. A row shorter than the header reads as empty cells (and is
    /// rejected).
    fn cell<'r>(&self, record: &'r csv::StringRecord, column: Column) -> Option<CellValue<'r>> {
        self.positions[column as usize].map(|i| unescape_cell(record.get(i).unwrap_or("")))
    }

    fn error(&self, line: u64, column: Option<Column>, kind: RowErrorKind) -> RowError {
        RowError {
            line,
            column: column
                .and_then(|c| self.positions[c as usize])
                .map(|i| self.header[i].name.clone()),
            kind,
        }
    }

    fn parse(&mut self, record: &csv::StringRecord, line: u64) -> RowOutcome {
        let mut errors = Vec::new();
        errors.extend(self.cell_count_error(record, line));
        if !self.unnamed.is_empty() {
            self.note_unnamed_values(record, line);
        }
        let address_cell = self.cell(record, Column::Email).map_or("", |c| c.text);
        let address = self.primary_address(address_cell, line, &mut errors);
        let aliases = self.aliases(record, address.as_ref(), line, &mut errors);
        let profile = self.profile(record, line, &mut errors);
        match address {
            Some(address) if errors.is_empty() => RowOutcome::Parsed(ParsedRow {
                line,
                address,
                aliases,
                profile,
            }),
            address => RowOutcome::Rejected(RejectedRow {
                line,
                address_text: match &address {
                    Some(a) => a.to_string(),
                    None => echo(address_cell).into_owned(),
                },
                address,
                aliases: aliases.unwrap_or_default(),
                errors,
            }),
        }
    }

    /// A row with fewer cells than the header, or with values beyond it.
    fn cell_count_error(&self, record: &csv::StringRecord, line: u64) -> Option<RowError> {
        let columns = self.header.len();
        let cells = record.len();
        if cells < columns {
            Some(self.error(line, None, RowErrorKind::TooFewCells { cells, columns }))
        } else if record.iter().skip(columns).any(|c| !c.trim().is_empty()) {
            Some(self.error(line, None, RowErrorKind::TooManyCells { cells, columns }))
        } else {
            None
        }
    }

    /// The primary address: present and valid (U1); an `SMTP:` prefix is
    /// read as the address.
    fn primary_address(
        &self,
        address_cell: &str,
        line: u64,
        errors: &mut Vec<RowError>,
    ) -> Option<Address> {
        if address_cell.is_empty() {
            errors.push(self.error(line, Some(Column::Email), RowErrorKind::MissingAddress));
            None
        } else {
            match Address::parse(strip_smtp(address_cell)) {
                Ok(address) => Some(address),
                Err(e) => {
                    errors.push(self.error(
                        line,
                        Some(Column::Email),
                        RowErrorKind::InvalidAddress {
                            value: echo(address_cell).into_owned(),
                            reason: id_reason(e),
                        },
                    ));
                    None
                }
            }
        }
    }

    /// The aliases (D3.c, U3): each valid, the primary itself only as its
    /// `SMTP:` entry, duplicates dropped. `None` without an aliases column.
    fn aliases(
        &self,
        record: &csv::StringRecord,
        address: Option<&Address>,
        line: u64,
        errors: &mut Vec<RowError>,
    ) -> Option<Vec<Address>> {
        self.cell(record, Column::Aliases).map(|cell| {
            let mut aliases: Vec<Address> = Vec::new();
            for token in split_aliases(cell.text) {
                let alias = match Address::parse(token.value) {
                    Ok(alias) => alias,
                    Err(e) => {
                        errors.push(self.error(
                            line,
                            Some(Column::Aliases),
                            RowErrorKind::InvalidAlias {
                                value: echo(token.value).into_owned(),
                                reason: id_reason(e),
                            },
                        ));
                        continue;
                    }
                };
                if Some(&alias) == address {
                    // proxyAddresses lists the primary itself as "SMTP:".
                    if !token.primary_marker {
                        errors.push(self.error(
                            line,
                            Some(Column::Aliases),
                            RowErrorKind::AliasIsPrimary {
                                address: alias.to_string(),
                            },
                        ));
                    }
                    continue;
                }
                if aliases.contains(&alias) {
                    continue;
                }
                aliases.push(alias);
            }
            aliases
        })
    }

    /// The profile fields (U2), each cleaned and checked; an empty cell
    /// clears the field.
    fn profile(
        &self,
        record: &csv::StringRecord,
        line: u64,
        errors: &mut Vec<RowError>,
    ) -> ProfilePatch {
        let mut profile = ProfilePatch::default();
        for column in Column::ALL.into_iter().filter(|c| c.is_profile_field()) {
            let Some(cell) = self.cell(record, column) else {
                continue;
            };
            let value = clean_value(cell, column);
            if let Some(kind) = check_value(&value, column) {
                errors.push(self.error(line, Some(column), kind));
            }
            if let Some(slot) = profile.get_mut(column) {
                *slot = Some((!value.is_empty()).then_some(value));
            }
        }
        profile
    }

    fn note_unnamed_values(&mut self, record: &csv::StringRecord, line: u64) {
        let warnings = &mut self.warnings;
        self.unnamed.retain(|&i| {
            let has_value = record.get(i).is_some_and(|c| !c.trim().is_empty());
            if has_value {
                warnings.push(FileWarning::UnnamedColumnHasValues {
                    position: i + 1,
                    line,
                });
            }
            !has_value
        });
    }
}

/// What is wrong with an address, without the address itself (messages
/// echo it shortened, [`echo`]).
fn id_reason(e: IdError) -> String {
    match e {
        IdError::InvalidAddress { reason, .. } | IdError::InvalidDomain { reason, .. } => {
            reason.to_string()
        }
        other => other.to_string(),
    }
}

/// `a@b` for `smtp:a@b` or `SMTP:a@b` (proxyAddresses style).
fn strip_smtp(value: &str) -> &str {
    match value.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("smtp:") => value[5..].trim_start(),
        _ => value,
    }
}

/// The value of a profile cell read by [`unescape_cell`]: line breaks in
/// notes become `\n`, unless an export escaped the cell, which keeps it
/// exactly as it was exported.
fn clean_value(cell: CellValue<'_>, column: Column) -> String {
    if column == Column::Notes && !cell.exact && cell.text.contains('\r') {
        cell.text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        cell.text.to_string()
    }
}

/// The first problem of a cleaned profile value.
fn check_value(value: &str, column: Column) -> Option<RowErrorKind> {
    // As roster_events::Profile::check: line breaks and tabs in notes only
    // (a carriage return reaches here only from an escaped export cell).
    let allowed = |c: char| column == Column::Notes && matches!(c, '\n' | '\r' | '\t');
    if let Some(c) = value.chars().find(|&c| c.is_control() && !allowed(c)) {
        return Some(RowErrorKind::ControlCharacter {
            column,
            code_point: format!("U+{:04X}", u32::from(c)),
        });
    }
    let max = column.max_chars()?;
    // Bytes bound characters from above: count only when it may matter.
    if value.len() > max {
        let len = value.chars().count();
        if len > max {
            return Some(RowErrorKind::TooLong { column, max, len });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ImportFile {
        parse_import(text.as_bytes(), &ImportOptions::default()).unwrap()
    }

    #[test]
    fn i14_rows_of_empty_cells_are_ignored_and_counted_empty_lines_are_not_rows() {
        let text = "email,first_name\r\na@x.example,A\r\n,\r\n\r\nb@x.example,B\r\n , \r\n";
        let file = parse_import(text.as_bytes(), &ImportOptions::default()).unwrap();
        assert_eq!(file.rows.len(), 2);
        assert_eq!(file.blank_rows, 2);
    }

    #[test]
    fn m2_line_numbers_count_physical_lines_across_multiline_cells_and_blank_lines() {
        let file = parse(
            "email,notes\r\n\
             a@x.com,\"one\r\ntwo\r\nthree\"\r\n\
             \r\n\
             \r\n\
             b@x.com,plain\r\n\
             c@x.com,\"x\ny\"\n\
             d@x.com,\n",
        );
        let lines: Vec<u64> = file.rows.iter().map(RowOutcome::line).collect();
        assert_eq!(lines, [2, 7, 8, 10]);
        assert_eq!(file.header_line, 1);
    }

    #[test]
    fn m2_lone_carriage_returns_end_lines_too() {
        let file = parse("email\ra@x.com\r\rb@x.com\r");
        let lines: Vec<u64> = file.rows.iter().map(RowOutcome::line).collect();
        assert_eq!(lines, [2, 4]);
    }

    #[test]
    fn m2_sep_line_names_the_delimiter_and_counts_as_a_line() {
        let file = parse("sep=;\r\nemail;notes\r\na@x.com;a,b\r\n");
        assert_eq!(file.delimiter, Delimiter::Semicolon);
        assert_eq!(file.header_line, 2);
        assert_eq!(file.rows[0].line(), 3);
    }

    #[test]
    fn m2_unterminated_quote_names_the_line_of_the_opening_quote() {
        let e = parse_import(
            b"email,notes\na@x.com,fine\nb@x.com,\"never closed\nc@x.com,x\n",
            &ImportOptions::default(),
        )
        .unwrap_err();
        assert_eq!(e, FileError::UnterminatedQuote { line: 3 });
        // Closed quotes, doubled quotes, and quotes inside unquoted cells are fine.
        parse("email,notes\na@x.com,\"say \"\"hi\"\"\"\nb@x.com,5\" floppy\n");
    }

    #[test]
    fn m2_unterminated_quote_in_the_header_is_reported_as_such() {
        let e = parse_import(b"email,\"notes\na@x.com,x\n", &ImportOptions::default()).unwrap_err();
        assert_eq!(e, FileError::UnterminatedQuote { line: 1 });
    }

    #[test]
    fn m2_generic_address_or_phone_column_yields_to_a_specific_one() {
        let file =
            parse("Address,Email,Phone,Mobile,Home Phone\n1 Main St,a@x.com,555-1,555-2,555-3\n");
        let row = file.parsed_rows().next().unwrap();
        assert_eq!(row.address.as_str(), "a@x.com");
        assert_eq!(row.profile.home_phone, Some(Some("555-3".into())));
        let warnings: Vec<String> = file.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "column 1, 'Address', is ignored: 'Email' is used for email",
                "column 3, 'Phone', is ignored: 'Home Phone' is used for home_phone",
            ]
        );
        // Alone, the generic names map.
        let file = parse("address,phone\na@x.com,555-1\n");
        assert!(file.warnings.is_empty());
        assert!(file.has_column(Column::HomePhone));
    }

    #[test]
    fn u1_same_address_twice_names_both_lines() {
        let file = parse("email,aliases\na@x.com,b@x.com\nc@x.com,\nA@X.com,\nd@x.com,B@x.com\n");
        let errors: Vec<String> = file.errors().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("line 4, column 'email': a@x.com also appears on line 2"));
        assert!(errors[1].starts_with("line 5, column 'aliases': b@x.com also appears on line 2"));
    }

    #[test]
    fn m2_formula_escape_of_exports_is_undone_on_import() {
        let file = parse("email,mobile,notes\na@x.com,'+49 170 1234567,'it's fine\n");
        let row = file.parsed_rows().next().unwrap();
        assert_eq!(row.profile.mobile, Some(Some("+49 170 1234567".into())));
        assert_eq!(row.profile.notes, Some(Some("'it's fine".into())));
    }

    #[test]
    fn control_characters_and_length_limits() {
        assert!(check_value("a\nb", Column::Notes).is_none());
        assert!(matches!(
            check_value("a\nb", Column::FirstName),
            Some(RowErrorKind::ControlCharacter { .. })
        ));
        let long = "é".repeat(crate::MAX_NAME_CHARS);
        assert!(
            check_value(&long, Column::Company).is_none(),
            "chars, not bytes"
        );
        assert!(matches!(
            check_value(&format!("{long}x"), Column::Company),
            Some(RowErrorKind::TooLong { len: 257, .. })
        ));
    }
}
