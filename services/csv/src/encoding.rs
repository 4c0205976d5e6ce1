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
    /// bytes are clearly UTF-16; then UTF-8 when the bytes are valid UTF-8;
    /// otherwise Windows-1252.
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
    /// Windows-1252, byte for byte (every byte decodes).
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
}

const BOM_UTF8: &[u8] = b"\xEF\xBB\xBF";
const BOM_UTF16LE: &[u8] = b"\xFF\xFE";
const BOM_UTF16BE: &[u8] = b"\xFE\xFF";

/// Decodes `bytes` as `choice` says (see [`EncodingChoice`]).
///
/// Errors: [`FileError::InvalidEncoding`] when an explicitly named UTF-8 or
/// UTF-16 encoding does not fit the bytes. Binary content is not judged
/// here but by [`crate::parse_import`].
pub fn decode(bytes: &[u8], choice: EncodingChoice) -> Result<Decoded<'_>, FileError> {
    let has_bom = [BOM_UTF8, BOM_UTF16LE, BOM_UTF16BE]
        .iter()
        .any(|bom| bytes.starts_with(bom));
    if choice == EncodingChoice::Auto && !has_bom {
        if let Some(encoding) = utf16_without_bom(bytes) {
            // Only when the whole file is well-formed UTF-16; else go on guessing.
            if let Ok(text) = decode_owned(encoding, bytes) {
                return Ok(Decoded {
                    text: Cow::Owned(text),
                    encoding,
                    bom: false,
                });
            }
        }
    }
    let (encoding, bom_len) = match choice {
        EncodingChoice::Auto => detect(bytes),
        EncodingChoice::Utf8 => (Encoding::Utf8, prefix_len(bytes, BOM_UTF8)),
        EncodingChoice::Utf16Le => (Encoding::Utf16Le, prefix_len(bytes, BOM_UTF16LE)),
        EncodingChoice::Utf16Be => (Encoding::Utf16Be, prefix_len(bytes, BOM_UTF16BE)),
        EncodingChoice::Windows1252 => (Encoding::Windows1252, 0),
    };
    let body = &bytes[bom_len..];
    let text = match encoding {
        Encoding::Utf8 => match std::str::from_utf8(body) {
            Ok(s) => Cow::Borrowed(s),
            Err(e) => {
                let at = e.valid_up_to();
                return Err(FileError::InvalidEncoding {
                    encoding,
                    line: line_at(&body[..at]),
                });
            }
        },
        _ => match decode_owned(encoding, body) {
            Ok(text) => Cow::Owned(text),
            Err(decoded_so_far) => {
                return Err(FileError::InvalidEncoding {
                    encoding,
                    line: line_at(decoded_so_far.as_bytes()),
                })
            }
        },
    };
    Ok(Decoded {
        text,
        encoding,
        bom: bom_len > 0,
    })
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

fn line_at(prefix: &[u8]) -> u64 {
    1 + prefix.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Picks the encoding of `bytes` and the length of its BOM.
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
    if std::str::from_utf8(bytes).is_ok() {
        (Encoding::Utf8, 0)
    } else {
        (Encoding::Windows1252, 0)
    }
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
                line: 2
            }
        );
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn m2_utf8_bom_with_invalid_bytes_is_an_error_not_a_guess() {
        let e = decode(b"\xEF\xBB\xBFemail\nb\xE9@x.com", EncodingChoice::Auto).unwrap_err();
        assert!(
            matches!(e, FileError::InvalidEncoding { line: 2, .. }),
            "{e:?}"
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
