//! Delimiter detection (M2: "comma, semicolon or tab detected").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::columns::Column;

/// The cell separator of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delimiter {
    /// `,`: plain CSV, Excel in English-speaking locales.
    #[default]
    Comma,
    /// `;`: Excel where the decimal separator is a comma (most of Europe).
    Semicolon,
    /// Tab: "Unicode text" and "Text (tab delimited)" from spreadsheet programs.
    Tab,
}

impl Delimiter {
    /// Every delimiter, in the order ties are broken.
    pub const ALL: [Delimiter; 3] = [Delimiter::Comma, Delimiter::Semicolon, Delimiter::Tab];

    /// The separator byte.
    pub fn as_byte(self) -> u8 {
        match self {
            Delimiter::Comma => b',',
            Delimiter::Semicolon => b';',
            Delimiter::Tab => b'\t',
        }
    }

    /// The separator character.
    pub fn as_char(self) -> char {
        char::from(self.as_byte())
    }

    /// `comma`, `semicolon` or `tab`.
    pub fn name(self) -> &'static str {
        match self {
            Delimiter::Comma => "comma",
            Delimiter::Semicolon => "semicolon",
            Delimiter::Tab => "tab",
        }
    }

    /// The delimiter written as `c`, if it is one.
    pub fn from_char(c: char) -> Option<Delimiter> {
        Delimiter::ALL.into_iter().find(|d| d.as_char() == c)
    }
}

impl fmt::Display for Delimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Delimiter {
    type Err = String;

    /// `comma`, `semicolon`, `tab`, or the character itself (`\t` too).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim_matches(' ');
        Delimiter::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(t) || t == d.as_char().to_string())
            .or((t == "\\t").then_some(Delimiter::Tab))
            .ok_or_else(|| format!("'{s}' is not a delimiter: use comma, semicolon or tab"))
    }
}

/// How much of the text detection looks at.
const SAMPLE_BYTES: usize = 64 * 1024;
/// How many records (header included) detection looks at.
const SAMPLE_RECORDS: usize = 51;

/// Picks the delimiter of `text` from its header line and first rows.
///
/// Each candidate splits the sample with full CSV quoting rules, so a
/// quoted `"Doe, Jane"` in a semicolon file does not count for the comma.
/// The candidate wins whose header (1) has an address column, then
/// (2) names the most known columns, then (3) splits most rows into as many
/// cells as the header, then (4) has the most columns. Ties go to comma,
/// then semicolon, then tab. A file with no separator at all is comma.
pub fn detect_delimiter(text: &str) -> Delimiter {
    let mut end = text.len().min(SAMPLE_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let sample = &text[..end];
    let truncated = end < text.len();
    let mut best = (Delimiter::Comma, Score::default());
    for delimiter in Delimiter::ALL {
        let score = score(sample, truncated, delimiter);
        if score > best.1 {
            best = (delimiter, score);
        }
    }
    best.0
}

#[derive(Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Score {
    has_address_column: bool,
    known_columns: usize,
    /// Rows with as many cells as the header, per mille of the rows.
    consistent_per_mille: usize,
    columns: usize,
}

fn score(sample: &str, truncated: bool, delimiter: Delimiter) -> Score {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter.as_byte())
        .from_reader(sample.as_bytes());
    let mut counts = Vec::with_capacity(SAMPLE_RECORDS);
    let mut header: Option<csv::ByteRecord> = None;
    let mut record = csv::ByteRecord::new();
    let mut complete = true;
    while counts.len() < SAMPLE_RECORDS {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => {
                complete = !truncated;
                break;
            }
            Err(_) => break,
        }
        // Blank, or separators only (an emptied spreadsheet row) for any
        // candidate: no evidence either way.
        let blank = record
            .iter()
            .flatten()
            .all(|b| b.is_ascii_whitespace() || matches!(b, b',' | b';' | b'\t'));
        if blank {
            continue;
        }
        if header.is_none() {
            header = Some(record.clone());
        }
        counts.push(record.len());
    }
    if !complete && counts.len() > 1 {
        // The last record may have been cut by the end of the sample.
        counts.pop();
    }
    let Some(header) = header else {
        return Score::default();
    };
    let columns: Vec<Option<Column>> = header
        .iter()
        .map(|cell| std::str::from_utf8(cell).ok().and_then(Column::from_header))
        .collect();
    let rows = &counts[1..];
    let consistent = rows.iter().filter(|&&n| n == header.len()).count();
    Score {
        has_address_column: columns.contains(&Some(Column::Email)),
        known_columns: columns.iter().flatten().count(),
        consistent_per_mille: if rows.is_empty() {
            1000
        } else {
            consistent * 1000 / rows.len()
        },
        columns: header.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn m2_delimiter_is_detected_from_the_header() {
        assert_eq!(
            detect_delimiter("email,first name\na@x.com,Anna"),
            Delimiter::Comma
        );
        assert_eq!(
            detect_delimiter("email;first name\na@x.com;Anna"),
            Delimiter::Semicolon
        );
        assert_eq!(
            detect_delimiter("email\tfirst name\na@x.com\tAnna"),
            Delimiter::Tab
        );
    }

    #[test]
    fn m2_quoted_cells_holding_other_delimiters_do_not_mislead_detection() {
        let text = "email;notes;company\r\n\
                    a@x.com;\"likes tea, coffee, cake\";\"Acme, Inc.\"\r\n\
                    b@x.com;\"one, two, three, four\";\"B, C, D\"\r\n";
        assert_eq!(detect_delimiter(text), Delimiter::Semicolon);
        let text = "email,notes\r\na@x.com,\"a;b;c;d\tx\"\r\nb@x.com,\"e;f;g\"\r\n";
        assert_eq!(detect_delimiter(text), Delimiter::Comma);
    }

    #[test]
    fn m2_unknown_headers_fall_back_to_row_consistency() {
        // No known column names; only the semicolon splits every row alike.
        let text = "Courriel;Prénom;Nom\r\na@x.com;Jean;Dupont, Jr\r\nb@x.com;Marie;Curie\r\n";
        assert_eq!(detect_delimiter(text), Delimiter::Semicolon);
    }

    #[test]
    fn m2_single_column_file_is_comma() {
        assert_eq!(detect_delimiter("email\na@x.com\n"), Delimiter::Comma);
    }

    #[test]
    fn delimiter_option_values_parse() {
        for d in Delimiter::ALL {
            assert_eq!(d.name().parse::<Delimiter>().unwrap(), d);
            assert_eq!(d.as_char().to_string().parse::<Delimiter>().unwrap(), d);
        }
        assert!("pipe".parse::<Delimiter>().is_err());
    }
}
