//! Input decoding (M2): UTF-8 with or without BOM, UTF-16 LE/BE ("Unicode
//! text" from spreadsheet programs) and Windows-1252 (Excel's plain "CSV
//! (Comma delimited)" on Western Windows).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::FileError;

/// The encoding the caller asks for. `Auto` (the default) detects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum EncodingChoice {
    /// Detect: a byte-order mark wins; then UTF-16 without BOM when the
    /// bytes are clearly UTF-16; then UTF-8, also when a few byte
    /// sequences are not valid UTF-8 (each becomes a row error); otherwise
    /// Windows-1252 (see [`decode`]).
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// UTF-8; a BOM is skipped. Invalid UTF-8 is a file error.
    #[serde(rename = "utf-8")]
    Utf8,
    /// UTF-16 little endian; a BOM is skipped. Malformed UTF-16 is a file error.
    #[serde(rename = "utf-16le")]
    Utf16Le,
    /// UTF-16 big endian; a BOM is skipped. Malformed UTF-16 is a file error.
    #[serde(rename = "utf-16be")]
    Utf16Be,
    /// Windows-1252, byte for byte; the five bytes it leaves undefined
    /// (0x81, 0x8D, 0x8F, 0x90, 0x9D) are a file error.
    #[serde(rename = "windows-1252")]
    Windows1252,
}

impl EncodingChoice {
    /// Every choice, in the order of the option's documentation.
    pub const ALL: [EncodingChoice; 5] = [
        EncodingChoice::Auto,
        EncodingChoice::Utf8,
        EncodingChoice::Utf16Le,
        EncodingChoice::Utf16Be,
        EncodingChoice::Windows1252,
    ];

    /// The option value: `auto`, `utf-8`, `utf-16le`, `utf-16be` or `windows-1252`.
    pub fn as_str(self) -> &'static str {
        match self {
            EncodingChoice::Auto => "auto",
            EncodingChoice::Utf8 => "utf-8",
            EncodingChoice::Utf16Le => "utf-16le",
            EncodingChoice::Utf16Be => "utf-16be",
            EncodingChoice::Windows1252 => "windows-1252",
        }
    }
}

impl fmt::Display for EncodingChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The value of an encoding option was not one of the accepted names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a supported encoding: use auto, utf-8, utf-16le, utf-16be or windows-1252")]
pub struct UnknownEncoding(pub String);

impl FromStr for EncodingChoice {
    type Err = UnknownEncoding;

    /// Accepts the option values case-insensitively, plus the common
    /// spellings `utf8`, `utf16le`, `utf16be`, `cp1252`, `latin1` and
    /// `iso-8859-1` (which browsers and Excel treat as Windows-1252).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key: String = s
            .trim()
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .flat_map(char::to_lowercase)
            .collect();
        Ok(match key.as_str() {
            "" | "auto" => EncodingChoice::Auto,
            "utf8" => EncodingChoice::Utf8,
            "utf16le" | "utf16" | "unicode" => EncodingChoice::Utf16Le,
            "utf16be" => EncodingChoice::Utf16Be,
            "windows1252" | "cp1252" | "latin1" | "iso88591" | "ansi" => {
                EncodingChoice::Windows1252
            }
            _ => return Err(UnknownEncoding(s.to_string())),
        })
    }
}

/// The encoding a file was read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Encoding {
    /// UTF-8 (with or without BOM; see [`Decoded::bom`]).
    #[serde(rename = "utf-8")]
    Utf8,
    /// UTF-16 little endian.
    #[serde(rename = "utf-16le")]
    Utf16Le,
    /// UTF-16 big endian.
    #[serde(rename = "utf-16be")]
    Utf16Be,
    /// Windows-1252.
    #[serde(rename = "windows-1252")]
    Windows1252,
}

impl Encoding {
    /// The name as in [`EncodingChoice::as_str`].
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Utf16Le => "utf-16le",
            Encoding::Utf16Be => "utf-16be",
            Encoding::Windows1252 => "windows-1252",
        }
    }

    fn codec(self) -> &'static encoding_rs::Encoding {
        match self {
            Encoding::Utf8 => encoding_rs::UTF_8,
            Encoding::Utf16Le => encoding_rs::UTF_16LE,
            Encoding::Utf16Be => encoding_rs::UTF_16BE,
            Encoding::Windows1252 => encoding_rs::WINDOWS_1252,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text decoded from the bytes of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// The text without its byte-order mark. Borrowed from the input when
    /// it was UTF-8, so the common case copies nothing.
    pub text: Cow<'a, str>,
    /// The encoding used.
    pub encoding: Encoding,
    /// Whether the input started with a byte-order mark.
    pub bom: bool,
    /// A UTF-8 file with a few invalid byte sequences: each one, in file
    /// order, replaced by U+FFFD in `text`. [`crate::parse_import`] makes
    /// every one an error of its row.
    pub invalid: Vec<InvalidSequence>,
    /// A file read as Windows-1252 by detection although it also holds
    /// correctly encoded UTF-8 characters: how many (a warning, since
    /// those characters are read wrong).
    pub utf8_characters: usize,
}

/// A byte sequence that is not UTF-8 in a file read as UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSequence {
    /// Where its U+FFFD is in [`Decoded::text`], in bytes.
    pub offset: usize,
    /// The physical line (1 = the first line of the file).
    pub line: u64,
    /// The character position in that line (1 = the first character).
    pub column: u64,
    /// The bytes, one to three.
    pub bytes: Vec<u8>,
}

impl InvalidSequence {
    /// The bytes as written in messages: `0xE9`, `0xC3 0x28`.
    pub fn hex(&self) -> String {
        hex(&self.bytes)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("0x{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

const BOM_UTF8: &[u8] = b"\xEF\xBB\xBF";
const BOM_UTF16LE: &[u8] = b"\xFF\xFE";
const BOM_UTF16BE: &[u8] = b"\xFE\xFF";

/// The bytes Windows-1252 leaves undefined. WHATWG decoders map them to C1
/// control characters; no text saved as Windows-1252 holds them.
const WINDOWS_1252_UNDEFINED: [u8; 5] = [0x81, 0x8D, 0x8F, 0x90, 0x9D];

/// Decodes `bytes` as `choice` says (see [`EncodingChoice`]).
///
/// Detection ([`EncodingChoice::Auto`]): a byte-order mark wins; then
/// UTF-16 without BOM when the bytes clearly are; then UTF-8. Bytes that
/// are not all valid UTF-8 are still read as UTF-8 when the file has a
/// UTF-8 BOM, or when its correctly encoded multi-byte characters are at
/// least as many as its invalid sequences (a UTF-8 file with a few damaged
/// bytes, not a Windows-1252 one): the invalid sequences are listed in
/// [`Decoded::invalid`]. Otherwise the file is Windows-1252.
///
/// Errors: [`FileError::InvalidEncoding`] when a named encoding does not
/// fit the bytes (named encodings are strict), and when a file read as
/// Windows-1252 holds a byte Windows-1252 does not define. Binary content
/// is not judged here but by [`crate::parse_import`].
pub fn decode(bytes: &[u8], choice: EncodingChoice) -> Result<Decoded<'_>, FileError> {
    let has_bom = [BOM_UTF8, BOM_UTF16LE, BOM_UTF16BE]
        .iter()
        .any(|bom| bytes.starts_with(bom));
    let decoded = |text, encoding, bom| Decoded {
        text,
        encoding,
        bom,
        invalid: Vec::new(),
        utf8_characters: 0,
    };
    if choice == EncodingChoice::Auto && !has_bom {
        if let Some(encoding) = utf16_without_bom(bytes) {
            // Only when the whole file is well-formed UTF-16; else go on guessing.
            if let Ok(text) = decode_owned(encoding, bytes) {
                return Ok(decoded(Cow::Owned(text), encoding, false));
            }
        }
    }
    let declared = choice != EncodingChoice::Auto;
    let (encoding, bom_len) = match choice {
        EncodingChoice::Auto => detect(bytes),
        EncodingChoice::Utf8 => (Encoding::Utf8, prefix_len(bytes, BOM_UTF8)),
        EncodingChoice::Utf16Le => (Encoding::Utf16Le, prefix_len(bytes, BOM_UTF16LE)),
        EncodingChoice::Utf16Be => (Encoding::Utf16Be, prefix_len(bytes, BOM_UTF16BE)),
        // A UTF-8 BOM means nothing in Windows-1252 ("ï»¿"): skip it.
        EncodingChoice::Windows1252 => (Encoding::Windows1252, prefix_len(bytes, BOM_UTF8)),
    };
    let body = &bytes[bom_len..];
    let bom = bom_len > 0;
    match encoding {
        Encoding::Utf8 => match std::str::from_utf8(body) {
            Ok(s) => Ok(decoded(Cow::Borrowed(s), encoding, bom)),
            Err(e) if declared => {
                let at = e.valid_up_to();
                let len = e.error_len().unwrap_or(body.len() - at);
                Err(invalid(
                    encoding,
                    &body[..at],
                    false,
                    &body[at..at + len],
                    true,
                ))
            }
            Err(_) => {
                let counts = Utf8Counts::of(body);
                if bom || (counts.valid > 0 && counts.invalid <= counts.valid) {
                    let (text, invalid) = decode_utf8_lossy(body);
                    Ok(Decoded {
                        invalid,
                        ..decoded(Cow::Owned(text), encoding, bom)
                    })
                } else {
                    windows_1252(body, false).map(|d| Decoded {
                        utf8_characters: counts.valid,
                        ..d
                    })
                }
            }
        },
        Encoding::Windows1252 => windows_1252(body, declared),
        _ => match decode_owned(encoding, body) {
            Ok(text) => Ok(decoded(Cow::Owned(text), encoding, bom)),
            Err(so_far) => {
                // encoding_rs stops after the malformed unit.
                let unit = &body[(so_far.encode_utf16().count() * 2).min(body.len())..];
                let unit = &unit[..unit.len().min(2)];
                // UTF-16 is only ever named or declared by a BOM.
                Err(invalid(encoding, so_far.as_bytes(), false, unit, true))
            }
        },
    }
}

/// Windows-1252, refusing the bytes it leaves undefined.
fn windows_1252(body: &[u8], declared: bool) -> Result<Decoded<'_>, FileError> {
    if let Some(at) = body.iter().position(|b| WINDOWS_1252_UNDEFINED.contains(b)) {
        return Err(invalid(
            Encoding::Windows1252,
            &body[..at],
            true,
            &body[at..=at],
            declared,
        ));
    }
    let text = decode_owned(Encoding::Windows1252, body)
        .expect("Windows-1252 decodes every byte but the undefined ones");
    Ok(Decoded {
        text: Cow::Owned(text),
        encoding: Encoding::Windows1252,
        bom: false,
        invalid: Vec::new(),
        utf8_characters: 0,
    })
}

/// The error for `bad` after `before` (UTF-8 text, or Windows-1252 bytes
/// when `single_byte`).
fn invalid(
    encoding: Encoding,
    before: &[u8],
    single_byte: bool,
    bad: &[u8],
    declared: bool,
) -> FileError {
    let (line, column) = line_and_column(before, single_byte);
    FileError::InvalidEncoding {
        encoding,
        line,
        column,
        bytes: hex(bad),
        declared,
    }
}

/// How much of a file that is not all valid UTF-8 is.
struct Utf8Counts {
    /// Correctly encoded multi-byte characters.
    valid: usize,
    /// Invalid sequences.
    invalid: usize,
}

impl Utf8Counts {
    fn of(mut bytes: &[u8]) -> Self {
        let lead_bytes = |s: &[u8]| s.iter().filter(|&&b| b >= 0xC0).count();
        let mut counts = Utf8Counts {
            valid: 0,
            invalid: 0,
        };
        loop {
            match std::str::from_utf8(bytes) {
                Ok(_) => {
                    counts.valid += lead_bytes(bytes);
                    return counts;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    counts.valid += lead_bytes(&bytes[..good]);
                    counts.invalid += 1;
                    let skip = e.error_len().unwrap_or(bytes.len() - good);
                    bytes = &bytes[good + skip..];
                }
            }
        }
    }
}

/// UTF-8 with every invalid sequence replaced by U+FFFD, and where each was.
fn decode_utf8_lossy(mut bytes: &[u8]) -> (String, Vec<InvalidSequence>) {
    let mut text = String::with_capacity(bytes.len() + 16);
    let mut found = Vec::new();
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                text.push_str(s);
                break;
            }
            Err(e) => {
                let good = e.valid_up_to();
                let skip = e.error_len().unwrap_or(bytes.len() - good);
                text.push_str(std::str::from_utf8(&bytes[..good]).expect("checked"));
                found.push(InvalidSequence {
                    offset: text.len(),
                    line: 0,
                    column: 0,
                    bytes: bytes[good..good + skip].to_vec(),
                });
                text.push(char::REPLACEMENT_CHARACTER);
                bytes = &bytes[good + skip..];
            }
        }
    }
    // Lines and columns in one pass over the text.
    let (mut line, mut line_start, mut prev, mut from) = (1u64, 0usize, 0u8, 0usize);
    for sequence in &mut found {
        for (i, &b) in text.as_bytes()[from..sequence.offset].iter().enumerate() {
            if b == b'\r' || (b == b'\n' && prev != b'\r') {
                line += 1;
            }
            if b == b'\r' || b == b'\n' {
                line_start = from + i + 1;
            }
            prev = b;
        }
        from = sequence.offset;
        sequence.line = line;
        sequence.column = 1 + text[line_start..sequence.offset].chars().count() as u64;
    }
    (text, found)
}

/// The line (1 = first) and character position in it (1 = first) of the
/// place right after `prefix`: UTF-8 text, or Windows-1252 bytes when
/// `single_byte`. `\n`, `\r\n` and a lone `\r` each end a line.
fn line_and_column(prefix: &[u8], single_byte: bool) -> (u64, u64) {
    let mut line = 1;
    let mut prev = 0;
    let mut line_start = 0;
    for (i, &b) in prefix.iter().enumerate() {
        if b == b'\r' || (b == b'\n' && prev != b'\r') {
            line += 1;
        }
        if b == b'\r' || b == b'\n' {
            line_start = i + 1;
        }
        prev = b;
    }
    let tail = &prefix[line_start..];
    let chars = if single_byte {
        tail.len()
    } else {
        tail.iter().filter(|&&b| b & 0xC0 != 0x80).count()
    };
    (line, 1 + chars as u64)
}

/// Decodes UTF-16 or Windows-1252 into a string sized for the text, not
/// for the worst case: encoding_rs zero-fills the capacity it is given, and
/// its one-call API asks for three bytes per Windows-1252 byte. Malformed
/// UTF-16 gives `Err` with the text decoded before the fault.
fn decode_owned(encoding: Encoding, body: &[u8]) -> Result<String, String> {
    use encoding_rs::DecoderResult;
    let mut decoder = encoding.codec().new_decoder_without_bom_handling();
    // Mostly ASCII: one UTF-8 byte per byte (Windows-1252) or per two bytes
    // (UTF-16), plus an eighth for accented letters.
    let units = match encoding {
        Encoding::Utf16Le | Encoding::Utf16Be => body.len() / 2,
        Encoding::Utf8 | Encoding::Windows1252 => body.len(),
    };
    let mut out = String::with_capacity(units + units / 8 + 16);
    let mut src = body;
    loop {
        let (result, read) = decoder.decode_to_string_without_replacement(src, &mut out, true);
        src = &src[read..];
        match result {
            DecoderResult::InputEmpty => return Ok(out),
            DecoderResult::OutputFull => out.reserve_exact(src.len() + 64),
            DecoderResult::Malformed(_, _) => return Err(out),
        }
    }
}

fn prefix_len(bytes: &[u8], prefix: &[u8]) -> usize {
    if bytes.starts_with(prefix) {
        prefix.len()
    } else {
        0
    }
}

/// The encoding of `bytes` by its BOM, and the length of the BOM.
fn detect(bytes: &[u8]) -> (Encoding, usize) {
    if bytes.starts_with(BOM_UTF8) {
        return (Encoding::Utf8, 3);
    }
    if bytes.starts_with(BOM_UTF16LE) {
        return (Encoding::Utf16Le, 2);
    }
    if bytes.starts_with(BOM_UTF16BE) {
        return (Encoding::Utf16Be, 2);
    }
    // UTF-8 unless its bytes say otherwise: [`decode`] decides.
    (Encoding::Utf8, 0)
}

/// UTF-16 without a BOM: text of mostly Latin characters has a zero byte in
/// every other position, which no CSV in an 8-bit encoding has. Judged on
/// the first KiB; [`decode`] then requires the whole file to be well-formed.
fn utf16_without_bom(bytes: &[u8]) -> Option<Encoding> {
    let sample = &bytes[..bytes.len().min(1024) & !1];
    if sample.len() < 8 {
        return None;
    }
    let pairs = sample.len() / 2;
    let (mut zero_even, mut zero_odd) = (0usize, 0usize);
    for pair in sample.chunks_exact(2) {
        zero_even += usize::from(pair[0] == 0);
        zero_odd += usize::from(pair[1] == 0);
    }
    if zero_odd * 10 >= pairs * 7 && zero_even * 10 <= pairs {
        Some(Encoding::Utf16Le)
    } else if zero_even * 10 >= pairs * 7 && zero_odd * 10 <= pairs {
        Some(Encoding::Utf16Be)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(text: &str, le: bool, bom: bool) -> Vec<u8> {
        let mut out = Vec::new();
        if bom {
            out.extend_from_slice(if le { BOM_UTF16LE } else { BOM_UTF16BE });
        }
        for unit in text.encode_utf16() {
            out.extend_from_slice(&if le {
                unit.to_le_bytes()
            } else {
                unit.to_be_bytes()
            });
        }
        out
    }

    #[test]
    fn m2_utf8_without_bom_is_borrowed_not_copied() {
        let d = decode(b"email\r\na@example.com\r\n", EncodingChoice::Auto).unwrap();
        assert_eq!(d.encoding, Encoding::Utf8);
        assert!(!d.bom);
        assert!(matches!(d.text, Cow::Borrowed(_)));
    }

    #[test]
    fn m2_utf8_bom_is_stripped_and_reported() {
        let d = decode(b"\xEF\xBB\xBFemail", EncodingChoice::Auto).unwrap();
        assert_eq!(
            (d.encoding, d.bom, &*d.text),
            (Encoding::Utf8, true, "email")
        );
    }

    #[test]
    fn m2_utf16_with_bom_both_byte_orders() {
        for le in [true, false] {
            let bytes = utf16("email\tJürgen €", le, true);
            let d = decode(&bytes, EncodingChoice::Auto).unwrap();
            let want = if le {
                Encoding::Utf16Le
            } else {
                Encoding::Utf16Be
            };
            assert_eq!(
                (d.encoding, d.bom, &*d.text),
                (want, true, "email\tJürgen €")
            );
        }
    }

    #[test]
    fn m2_utf16_without_bom_is_recognised_by_its_zero_bytes() {
        let text = "email,first name\r\nanna@example.com,Anna\r\n";
        for le in [true, false] {
            let bytes = utf16(text, le, false);
            let d = decode(&bytes, EncodingChoice::Auto).unwrap();
            assert!(!d.bom);
            assert_eq!(&*d.text, text);
        }
    }

    #[test]
    fn m2_invalid_utf8_falls_back_to_windows_1252() {
        let d = decode(b"Ren\xE9 \x80 Stra\xDFe", EncodingChoice::Auto).unwrap();
        assert_eq!(d.encoding, Encoding::Windows1252);
        assert_eq!(&*d.text, "René € Straße");
    }

    #[test]
    fn m2_windows_1252_text_longer_than_the_size_estimate_decodes_whole() {
        // Every byte becomes three UTF-8 bytes: the buffer must grow.
        let d = decode(&[0x80; 10_000], EncodingChoice::Windows1252).unwrap();
        assert_eq!(d.text.chars().count(), 10_000);
        assert!(d.text.chars().all(|c| c == '€'));
    }

    #[test]
    fn m2_explicit_windows_1252_wins_over_valid_utf8() {
        // "Ã©" in UTF-8 bytes is also valid Windows-1252; the caller decides.
        let d = decode("é".as_bytes(), EncodingChoice::Windows1252).unwrap();
        assert_eq!(&*d.text, "Ã©");
    }

    #[test]
    fn m2_explicit_utf8_refuses_invalid_bytes_and_names_the_line() {
        let e = decode(b"email\nb\xE9@example.com", EncodingChoice::Utf8).unwrap_err();
        assert_eq!(
            e,
            FileError::InvalidEncoding {
                encoding: Encoding::Utf8,
                line: 2,
                column: 2,
                bytes: "0xE9".into(),
                declared: true,
            }
        );
        assert!(e.to_string().contains("line 2, character 2"), "{e}");
    }

    #[test]
    fn m2_utf8_with_a_few_invalid_bytes_is_read_as_utf8_listing_each_one() {
        // Correct accents (José, Müller, Zoë) and two damaged sequences: a
        // lone Windows-1252 é, and a UTF-8 lead byte cut off before ASCII.
        let bytes = [
            "email,first_name\r\njose@x.com,José\r\nm@x.com,Müller\r\nz@x.com,Zoë Ren".as_bytes(),
            b"\xE9\r\nr@x.com,X\xC3!\r\n",
        ]
        .concat();
        let d = decode(&bytes, EncodingChoice::Auto).unwrap();
        assert_eq!(d.encoding, Encoding::Utf8);
        assert!(d.text.contains("José") && d.text.contains("Müller") && d.text.contains("Zoë"));
        let found: Vec<(u64, u64, String)> = d
            .invalid
            .iter()
            .map(|s| (s.line, s.column, s.hex()))
            .collect();
        assert_eq!(
            found,
            [(4, 16, "0xE9".to_string()), (5, 10, "0xC3".to_string())]
        );
        for s in &d.invalid {
            assert_eq!(&d.text[s.offset..s.offset + 3], "\u{FFFD}");
        }
    }

    #[test]
    fn m2_utf8_bom_with_invalid_bytes_is_utf8_with_errors_not_a_guess() {
        let d = decode(b"\xEF\xBB\xBFemail\nb\xE9@x.com", EncodingChoice::Auto).unwrap();
        assert_eq!((d.encoding, d.bom), (Encoding::Utf8, true));
        assert_eq!(d.invalid.len(), 1);
        assert_eq!((d.invalid[0].line, d.invalid[0].column), (2, 2));
    }

    #[test]
    fn m2_mostly_windows_1252_with_one_utf8_lookalike_is_windows_1252_with_a_count() {
        // "Ã©" in Windows-1252 is the bytes of a UTF-8 é; the other three
        // accents are plain Windows-1252.
        let d = decode(
            b"Ren\xE9 \xC3\xA9 M\xFCller Stra\xDFe",
            EncodingChoice::Auto,
        )
        .unwrap();
        assert_eq!(d.encoding, Encoding::Windows1252);
        assert_eq!(&*d.text, "René Ã© Müller Straße");
        assert_eq!(d.utf8_characters, 1);
        assert!(d.invalid.is_empty());
    }

    #[test]
    fn m2_windows_1252_undefined_bytes_are_a_file_error() {
        // Named: "not valid windows-1252".
        let e = decode(b"email\na\x81b@x.com", EncodingChoice::Windows1252).unwrap_err();
        assert_eq!(
            e,
            FileError::InvalidEncoding {
                encoding: Encoding::Windows1252,
                line: 2,
                column: 2,
                bytes: "0x81".into(),
                declared: true,
            }
        );
        assert!(e.to_string().contains("not valid windows-1252"), "{e}");
        // Detected (not UTF-8 either): neither.
        let e = decode(b"email\nJ\xFCrgen \x9D", EncodingChoice::Auto).unwrap_err();
        assert!(
            matches!(
                e,
                FileError::InvalidEncoding {
                    line: 2,
                    column: 8,
                    declared: false,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("neither UTF-8 nor Windows-1252"),
            "{e}"
        );
    }

    #[test]
    fn m2_explicit_utf16_refuses_odd_length_input() {
        let mut bytes = utf16("email", true, true);
        bytes.push(b'x');
        assert!(decode(&bytes, EncodingChoice::Utf16Le).is_err());
    }

    #[test]
    fn m2_encoding_option_values_parse() {
        for c in EncodingChoice::ALL {
            assert_eq!(c.as_str().parse::<EncodingChoice>().unwrap(), c);
        }
        assert_eq!(
            "CP1252".parse::<EncodingChoice>().unwrap(),
            EncodingChoice::Windows1252
        );
        assert!("ebcdic".parse::<EncodingChoice>().is_err());
    }
}
