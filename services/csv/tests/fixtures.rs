//! The fixture files under `tests/fixtures/`, byte for byte, built the way
//! spreadsheet programs and directory tools write them. The files are
//! checked in; this test proves they are what these generators make.
//! To regenerate after changing a generator:
//!
//! ```sh
//! ROSTER_CSV_WRITE_FIXTURES=1 cargo test -p roster-csv --test fixtures
//! ```

use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// UTF-16 code units in the given byte order, after a BOM.
fn utf16_with_bom(text: &str, little_endian: bool) -> Vec<u8> {
    let mut out = if little_endian {
        vec![0xFF, 0xFE]
    } else {
        vec![0xFE, 0xFF]
    };
    for unit in text.encode_utf16() {
        out.extend_from_slice(&if little_endian {
            unit.to_le_bytes()
        } else {
            unit.to_be_bytes()
        });
    }
    out
}

/// Windows-1252 bytes; panics on a character the code page lacks.
fn windows_1252(text: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(text);
    assert!(!unmappable, "not representable in Windows-1252: {text}");
    bytes.into_owned()
}

fn utf8_bom(text: &str) -> Vec<u8> {
    let mut out = b"\xEF\xBB\xBF".to_vec();
    out.extend_from_slice(text.as_bytes());
    out
}

/// Lines joined with CRLF, as Excel ends records. Line breaks inside a
/// quoted cell stay LF (what Alt+Enter puts into a cell).
fn crlf(lines: &[&str]) -> String {
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    out
}

/// Every fixture: file name and bytes.
fn fixtures() -> Vec<(&'static str, Vec<u8>)> {
    let long_name = "A".repeat(257);
    let long_phone = "1".repeat(65);
    let long_notes = "n".repeat(4097);
    let row_errors = crlf(&[
        "email,first_name,last_name,aliases,mobile,notes",
        "anna@example.com,Anna,Berg,\"anna.berg@example.com, a.berg@example.com\",,",
        "not-an-address,Bob,Bad,,,",
        ",Nobody,Here,,,",
        "carl@example.com,Carl,Alias,\"carl.alias@example.com; nope\",,",
        "dora@example.com,Dora,Self,\"dora@example.com\",,",
        "ANNA@example.com,Anna,Again,,,",
        "eve@example.com,Eve,Steals,anna.berg@example.com,,",
        "anna.berg@example.com,Anna,Alias,,,",
        &format!("fred@example.com,{long_name},Long,,{long_phone},{long_notes}"),
        "gina@example.com,Gi\u{7}na,Bell,,,",
        "hugo@example.com,Hugo,\"Multi\nLine\",,,",
        "ivy@example.com,Ivy,Fine,,,\"ok\nmultiline notes\"",
    ]);
    let mut binary = Vec::with_capacity(512);
    let mut x: u32 = 0x2545_F491;
    for _ in 0..512 {
        // xorshift32: deterministic junk with zero bytes and control bytes.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        binary.push((x >> 24) as u8);
    }
    vec![
        (
            // Excel/LibreOffice "Unicode Text": UTF-16 LE with BOM, tabs, CRLF.
            "m2_unicode_text_utf16le_tab.txt",
            utf16_with_bom(
                &crlf(&[
                    "E-mail Address\tFirst Name\tLast Name\tCompany\tNotes",
                    "rene.dubois@example.com\tRené\tDubois\tÉtoile SARL\t\"Prefers \"\"René\"\" with the accent\nLyon office\"",
                    "juergen.weiss@example.com\tJürgen\tWeiß\tMüller & Söhne GmbH\t",
                    "zoe.ng@example.com\tZoë\tNg\tAcme, Inc.\tBudget: 500 €; party 🎉",
                ]),
                true,
            ),
        ),
        (
            "m2_unicode_text_utf16be_tab.txt",
            utf16_with_bom(
                &crlf(&[
                    "mail\tgivenName\tsn",
                    "sven.aasen@example.com\tSven\tÅsen",
                ]),
                false,
            ),
        ),
        (
            // Excel "CSV UTF-8" where the list separator is ';' (most of
            // Europe): BOM, semicolons, commas left unquoted.
            "m2_excel_eu_utf8_bom_semicolon.csv",
            utf8_bom(&crlf(&[
                "E-Mail;First Name;Last Name;Aliases;Mobile;Department;Notes",
                "klaus.mueller@example.de;Klaus;Müller;k.mueller@example.de, klaus@example.de;+49 170 1234567;Finance, Controlling;",
                "anna.schaefer@example.de;Anna;Schäfer;;'+49 151 7654321;Vertrieb;\"Call before 10; not on Fridays\"",
                "lena.gross@example.de;Lena;Groß;;;IT;Preis: 12,50 €",
            ])),
        ),
        (
            // Excel "CSV (Comma delimited)" on Western Windows: Windows-1252,
            // no BOM, CRLF.
            "m2_excel_windows1252_comma.csv",
            windows_1252(&crlf(&[
                "Email,First Name,Last Name,Company,Department,Notes",
                "rene.dubois@example.com,René,Dubois,Café Müller,Küche,Budget 500 €",
                "juergen.weiss@example.com,Jürgen,Weiß,\"Weiß, Söhne & Co.\",Straße,",
                "zoe.nunez@example.com,Zoë,Núñez,Acme,Sales,\"Says \"\"hi\"\"\"",
            ])),
        ),
        (
            // Excel "CSV UTF-8" with multi-line notes (Alt+Enter), a blank
            // line, an emptied row Excel writes as separators only, and a
            // note holding an empty line.
            "m2_excel_multiline_notes.csv",
            utf8_bom(&crlf(&[
                "email,first_name,last_name,notes",
                "anna@example.com,Anna,Berg,\"First line",
                "second line, with a comma",
                "third line with \"\"quotes\"\"\"",
                "bob@example.com,Bob,Stone,single line",
                "",
                ",,,",
                "carl@example.com,Carl,Wade,\"Paragraph one",
                "",
                "Paragraph two after an empty line\"",
                "dora@example.com,Dora,Lee,",
                "ANNA@EXAMPLE.COM,Anna,Duplicate,",
            ])),
        ),
        (
            // Active Directory export (csvde / PowerShell): LDAP attribute
            // names, proxyAddresses with the primary as "SMTP:", X500 and
            // SIP entries, and a column Roster does not know.
            "m2_ad_export_proxyaddresses.csv",
            crlf(&[
                "mail,givenName,sn,title,proxyAddresses,homePhone,info",
                "john.doe@example.com,John,Doe,Engineer,\"SMTP:john.doe@example.com;smtp:jdoe@example.com;X500:/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=john;SIP:john.doe@example.com;smtp:john@example.net\",555-0100,\"Desk 4.12\nBuilding B\"",
                "mary.major@example.com,Mary,Major,CFO,SMTP:mary.major@example.com,,",
            ])
            .into_bytes(),
        ),
        ("m2_row_errors.csv", row_errors.into_bytes()),
        (
            "m2_header_only.csv",
            b"email,first_name,last_name\r\n".to_vec(),
        ),
        ("m2_malformed_empty.csv", Vec::new()),
        (
            "m2_malformed_unterminated_quote.csv",
            crlf(&[
                "email,first_name,notes",
                "anna@example.com,Anna,fine",
                "bob@example.com,Bob,\"opened but never closed",
                "carl@example.com,Carl,swallowed",
            ])
            .into_bytes(),
        ),
        (
            "m2_malformed_ragged_rows.csv",
            crlf(&[
                "email,first_name,last_name",
                "anna@example.com,Anna,Berg",
                "bob@example.com,Bob,Stone,Sales,extra",
                "carl@example.com,Carl",
                "dora@example.com,Dora,Lee,,",
            ])
            .into_bytes(),
        ),
        ("m2_malformed_binary_junk.bin", binary),
        (
            // The first bytes of a ZIP archive, as every .xlsx starts.
            "m2_malformed_xlsx_workbook.xlsx",
            b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00[Content_Types].xml".to_vec(),
        ),
        (
            "m2_malformed_no_address_column.csv",
            crlf(&["Name,Phone,Department", "Jane Doe,555-0100,Sales"]).into_bytes(),
        ),
        (
            "m2_malformed_single_column_not_csv.txt",
            crlf(&["Name|Phone|Department", "Jane Doe|555-0100|Sales"]).into_bytes(),
        ),
        (
            "m2_malformed_headerless_address_list.csv",
            crlf(&["jane@example.com", "john@example.com"]).into_bytes(),
        ),
    ]
}

#[test]
fn fixture_files_are_what_their_generators_make() {
    let write = std::env::var_os("ROSTER_CSV_WRITE_FIXTURES").is_some();
    if write {
        std::fs::create_dir_all(dir()).unwrap();
    }
    for (name, bytes) in fixtures() {
        let path = dir().join(name);
        if write {
            std::fs::write(&path, &bytes).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with ROSTER_CSV_WRITE_FIXTURES=1)",
                path.display()
            )
        });
        assert!(
            on_disk == bytes,
            "{name} differs from its generator (run with ROSTER_CSV_WRITE_FIXTURES=1)"
        );
    }
}
