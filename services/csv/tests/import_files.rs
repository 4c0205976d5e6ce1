//! M2 import on real files (see `tests/fixtures.rs` for how each was made):
//! encodings, delimiters, quoting, line numbers, header synonyms, row checks
//! (U1, U2) and file-level errors.

use std::path::PathBuf;

use roster_csv::{
    parse_import, AddressRole, Column, Delimiter, Encoding, EncodingChoice, FileError, FileWarning,
    ImportFile, ImportOptions, ParsedRow, RowErrorKind, RowOutcome,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read(name: &str) -> ImportFile {
    parse_import(&fixture(name), &ImportOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn read_err(name: &str) -> FileError {
    match parse_import(&fixture(name), &ImportOptions::default()) {
        Ok(file) => panic!("{name} was accepted: {file:?}"),
        Err(e) => e,
    }
}

fn parsed(file: &ImportFile) -> Vec<&ParsedRow> {
    let errors: Vec<String> = file.errors().map(ToString::to_string).collect();
    assert!(errors.is_empty(), "unexpected row errors: {errors:#?}");
    file.parsed_rows().collect()
}

fn lines(file: &ImportFile) -> Vec<u64> {
    file.rows.iter().map(RowOutcome::line).collect()
}

fn set(value: &str) -> Option<Option<String>> {
    Some(Some(value.to_string()))
}

#[test]
fn m2_utf16le_tab_separated_with_bom_is_read() {
    let file = read("m2_unicode_text_utf16le_tab.txt");
    assert_eq!(file.encoding, Encoding::Utf16Le);
    assert!(file.bom);
    assert_eq!(file.delimiter, Delimiter::Tab);
    let rows = parsed(&file);
    assert_eq!(lines(&file), [2, 4, 5]);
    assert_eq!(rows[0].address.as_str(), "rene.dubois@example.com");
    assert_eq!(rows[0].profile.first_name, set("René"));
    assert_eq!(rows[0].profile.company, set("Étoile SARL"));
    assert_eq!(
        rows[0].profile.notes,
        set("Prefers \"René\" with the accent\nLyon office")
    );
    assert_eq!(rows[1].profile.last_name, set("Weiß"));
    assert_eq!(rows[1].profile.notes, Some(None), "empty cell clears");
    assert_eq!(rows[2].profile.company, set("Acme, Inc."));
    assert_eq!(rows[2].profile.notes, set("Budget: 500 €; party 🎉"));
    // No aliases column: aliases are left alone.
    assert_eq!(rows[0].aliases, None);
}

#[test]
fn m2_utf16be_with_bom_is_read() {
    let file = read("m2_unicode_text_utf16be_tab.txt");
    assert_eq!(
        (file.encoding, file.delimiter),
        (Encoding::Utf16Be, Delimiter::Tab)
    );
    let rows = parsed(&file);
    assert_eq!(rows[0].profile.first_name, set("Sven"));
    assert_eq!(rows[0].profile.last_name, set("Åsen"));
}

#[test]
fn m2_utf8_bom_semicolon_separated_european_excel_is_read() {
    let file = read("m2_excel_eu_utf8_bom_semicolon.csv");
    assert_eq!(file.encoding, Encoding::Utf8);
    assert!(file.bom);
    assert_eq!(file.delimiter, Delimiter::Semicolon);
    assert_eq!(file.header[0].name, "E-Mail", "BOM is not part of the name");
    let rows = parsed(&file);
    assert_eq!(rows.len(), 3);
    let aliases: Vec<&str> = rows[0]
        .aliases
        .as_ref()
        .unwrap()
        .iter()
        .map(|a| a.as_str())
        .collect();
    assert_eq!(aliases, ["k.mueller@example.de", "klaus@example.de"]);
    assert_eq!(rows[0].profile.department, set("Finance, Controlling"));
    assert_eq!(rows[0].profile.mobile, set("+49 170 1234567"));
    assert_eq!(
        rows[1].profile.mobile,
        set("+49 151 7654321"),
        "the quote an export puts before '+' is removed"
    );
    assert_eq!(rows[1].profile.notes, set("Call before 10; not on Fridays"));
    assert_eq!(rows[1].aliases, Some(vec![]), "empty aliases cell");
    assert_eq!(rows[2].profile.last_name, set("Groß"));
    assert_eq!(rows[2].profile.notes, set("Preis: 12,50 €"));
}

#[test]
fn m2_windows1252_comma_csv_with_accents_and_euro_is_read() {
    let file = read("m2_excel_windows1252_comma.csv");
    assert_eq!(file.encoding, Encoding::Windows1252);
    assert!(!file.bom);
    assert_eq!(file.delimiter, Delimiter::Comma);
    let rows = parsed(&file);
    assert_eq!(rows[0].profile.first_name, set("René"));
    assert_eq!(rows[0].profile.company, set("Café Müller"));
    assert_eq!(rows[0].profile.department, set("Küche"));
    assert_eq!(rows[0].profile.notes, set("Budget 500 €"));
    assert_eq!(rows[1].profile.last_name, set("Weiß"));
    assert_eq!(rows[1].profile.company, set("Weiß, Söhne & Co."));
    assert_eq!(rows[1].profile.department, set("Straße"));
    assert_eq!(rows[2].profile.first_name, set("Zoë"));
    assert_eq!(rows[2].profile.last_name, set("Núñez"));
    assert_eq!(rows[2].profile.notes, set("Says \"hi\""));
}

#[test]
fn m2_explicit_encoding_overrides_detection() {
    // Read as UTF-16 LE on request even though it has a BOM anyway.
    let bytes = fixture("m2_unicode_text_utf16le_tab.txt");
    let options = ImportOptions {
        encoding: EncodingChoice::Utf16Le,
        ..ImportOptions::default()
    };
    assert_eq!(parse_import(&bytes, &options).unwrap().rows.len(), 3);
    // Naming the wrong encoding is a clear file error, not garbage rows.
    let options = ImportOptions {
        encoding: EncodingChoice::Utf8,
        ..ImportOptions::default()
    };
    let e = parse_import(&fixture("m2_excel_windows1252_comma.csv"), &options).unwrap_err();
    assert_eq!(
        e,
        FileError::InvalidEncoding {
            encoding: Encoding::Utf8,
            line: 2
        }
    );
}

#[test]
fn m2_excel_quoted_multiline_notes_keep_physical_line_numbers() {
    let file = read("m2_excel_multiline_notes.csv");
    // Row starts: 2 (note over 3 lines), 5, blank 6, separators-only 7
    // (ignored), 8 (note over 3 lines with an empty one), 11, 12.
    assert_eq!(lines(&file), [2, 5, 8, 11, 12]);
    let anna = file.rows[0].parsed().unwrap();
    assert_eq!(
        anna.profile.notes,
        set("First line\nsecond line, with a comma\nthird line with \"quotes\"")
    );
    let carl = file.rows[2].parsed().unwrap();
    assert_eq!(
        carl.profile.notes,
        set("Paragraph one\n\nParagraph two after an empty line")
    );
    // The duplicate on line 12 names line 2, whose note spans three lines.
    let RowOutcome::Rejected(dup) = &file.rows[4] else {
        panic!("line 12 should be rejected");
    };
    assert_eq!(dup.line, 12);
    assert_eq!(dup.address_text, "anna@example.com");
    assert_eq!(dup.errors.len(), 1);
    assert_eq!(dup.errors[0].column.as_deref(), Some("email"));
    assert!(
        dup.errors[0]
            .to_string()
            .contains("anna@example.com also appears on line 2"),
        "{}",
        dup.errors[0]
    );
}

#[test]
fn m2_active_directory_export_maps_ldap_names_and_proxy_addresses() {
    let file = read("m2_ad_export_proxyaddresses.csv");
    assert_eq!(
        file.warnings,
        [FileWarning::UnknownColumn {
            name: "title".into(),
            position: 4
        }]
    );
    assert!(file.warnings[0].to_string().contains("'title'"));
    let rows = parsed(&file);
    let john = rows[0];
    let aliases: Vec<&str> = john
        .aliases
        .as_ref()
        .unwrap()
        .iter()
        .map(|a| a.as_str())
        .collect();
    // SMTP: (the primary) dropped, X500 and SIP ignored, smtp: kept.
    assert_eq!(aliases, ["jdoe@example.com", "john@example.net"]);
    assert_eq!(john.profile.home_phone, set("555-0100"));
    assert_eq!(john.profile.notes, set("Desk 4.12\nBuilding B"));
    assert_eq!(john.profile.company, None, "no company column");
    assert_eq!(rows[1].aliases, Some(vec![]));
    let addresses: Vec<(u64, AddressRole, &str)> = file
        .addresses()
        .map(|(line, role, a)| (line, role, a.as_str()))
        .collect();
    assert_eq!(
        addresses,
        [
            (2, AddressRole::Primary, "john.doe@example.com"),
            (2, AddressRole::Alias, "jdoe@example.com"),
            (2, AddressRole::Alias, "john@example.net"),
            // John's note spans two lines.
            (4, AddressRole::Primary, "mary.major@example.com"),
        ]
    );
}

#[test]
fn m2_every_row_gets_an_outcome_with_line_column_and_reason() {
    let file = read("m2_row_errors.csv");
    /// (column as written, error code) of each error of one row.
    type Errors<'a> = Vec<(Option<&'a str>, &'a str)>;
    let outcome: Vec<(u64, Errors)> = file
        .rows
        .iter()
        .map(|r| {
            (
                r.line(),
                r.errors()
                    .iter()
                    .map(|e| (e.column.as_deref(), e.kind.code()))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        outcome,
        [
            (2, vec![]),
            (3, vec![(Some("email"), "invalid_address")]),
            (4, vec![(Some("email"), "missing_address")]),
            (5, vec![(Some("aliases"), "invalid_alias")]),
            (6, vec![(Some("aliases"), "alias_is_primary")]),
            (7, vec![(Some("email"), "duplicate_address")]),
            (8, vec![(Some("aliases"), "duplicate_address")]),
            (9, vec![(Some("email"), "duplicate_address")]),
            (
                10,
                vec![
                    (Some("first_name"), "too_long"),
                    (Some("mobile"), "too_long"),
                    (Some("notes"), "too_long"),
                ]
            ),
            (11, vec![(Some("first_name"), "control_character")]),
            (12, vec![(Some("last_name"), "control_character")]),
            (14, vec![]),
        ]
    );
}

#[test]
fn u1_an_address_twice_in_the_file_names_both_lines() {
    let file = read("m2_row_errors.csv");
    let message = |line: u64| {
        file.rows
            .iter()
            .find(|r| r.line() == line)
            .unwrap()
            .errors()[0]
            .to_string()
    };
    assert_eq!(
        message(7),
        "line 7, column 'email': anna@example.com also appears on line 2 (the address there, the address here): an address can belong to one user only"
    );
    assert!(message(8)
        .contains("anna.berg@example.com also appears on line 2 (an alias there, an alias here)"));
    assert!(message(9).contains(
        "anna.berg@example.com also appears on line 2 (an alias there, the address here)"
    ));
    assert!(message(6).contains("dora@example.com is this row's own address"));
    assert!(message(5).contains("alias 'nope' is not a valid email address"));
    assert!(message(3).contains("'not-an-address' is not a valid email address"));
}

#[test]
fn u2_field_limits_and_control_characters_are_row_errors() {
    let file = read("m2_row_errors.csv");
    let row = file.rows.iter().find(|r| r.line() == 10).unwrap();
    let kinds: Vec<&RowErrorKind> = row.errors().iter().map(|e| &e.kind).collect();
    assert_eq!(
        kinds,
        [
            &RowErrorKind::TooLong {
                column: Column::FirstName,
                max: 256,
                len: 257
            },
            &RowErrorKind::TooLong {
                column: Column::Mobile,
                max: 64,
                len: 65
            },
            &RowErrorKind::TooLong {
                column: Column::Notes,
                max: 4096,
                len: 4097
            },
        ]
    );
    let bell = file.rows.iter().find(|r| r.line() == 11).unwrap();
    assert!(bell.errors()[0].to_string().contains("U+0007"));
    // A line break is fine in notes (line 14) but not in a name (line 12).
    let newline = file.rows.iter().find(|r| r.line() == 12).unwrap();
    assert!(newline.errors()[0].to_string().contains("U+000A"));
    assert!(file.rows.last().unwrap().parsed().is_some());
}

#[test]
fn m2_header_only_file_has_zero_rows_and_is_not_an_error() {
    let file = read("m2_header_only.csv");
    assert!(file.rows.is_empty());
    assert!(file.has_column(Column::LastName));
}

#[test]
fn m2_empty_file_is_an_error_that_says_what_a_file_needs() {
    let e = read_err("m2_malformed_empty.csv");
    assert_eq!(e, FileError::Empty);
    assert!(e.to_string().contains("header line"));
    for blank in [&b"\xEF\xBB\xBF"[..], b"\r\n\r\n", b"  \n", b",,,\r\n"] {
        assert_eq!(
            parse_import(blank, &ImportOptions::default()).unwrap_err(),
            FileError::Empty,
            "{blank:?}"
        );
    }
}

#[test]
fn m2_unterminated_quote_is_a_file_error_naming_the_line() {
    let e = read_err("m2_malformed_unterminated_quote.csv");
    assert_eq!(e, FileError::UnterminatedQuote { line: 3 });
    assert!(e.to_string().contains("line 3"), "{e}");
}

#[test]
fn m2_ragged_rows_are_row_errors() {
    let file = read("m2_malformed_ragged_rows.csv");
    let codes: Vec<(u64, Vec<&str>)> = file
        .rows
        .iter()
        .map(|r| (r.line(), r.errors().iter().map(|e| e.kind.code()).collect()))
        .collect();
    assert_eq!(
        codes,
        [
            (2, vec![]),
            (3, vec!["too_many_cells"]),
            (4, vec!["too_few_cells"]),
            // Extra cells that are empty (trailing separators) are harmless.
            (5, vec![]),
        ]
    );
    let message = file.rows[1].errors()[0].to_string();
    assert!(
        message.contains("5 cells but the header has 3 columns"),
        "{message}"
    );
}

#[test]
fn m2_binary_junk_is_not_csv() {
    let e = read_err("m2_malformed_binary_junk.bin");
    assert!(matches!(e, FileError::Binary { .. }), "{e:?}");
    assert!(e.to_string().starts_with("the file is not CSV text"), "{e}");
}

#[test]
fn m2_excel_workbook_is_refused_with_how_to_save_as_csv() {
    let e = read_err("m2_malformed_xlsx_workbook.xlsx");
    assert!(matches!(e, FileError::Binary { .. }), "{e:?}");
    assert!(e.to_string().contains(".xlsx"), "{e}");
    assert!(e.to_string().contains("save it as 'CSV UTF-8"), "{e}");
}

#[test]
fn m2_no_address_column_lists_the_accepted_header_names() {
    let e = read_err("m2_malformed_no_address_column.csv");
    assert_eq!(
        e,
        FileError::NoAddressColumn {
            found: vec!["Name".into(), "Phone".into(), "Department".into()]
        }
    );
    let message = e.to_string();
    assert!(
        message.contains("'Name', 'Phone', 'Department'"),
        "{message}"
    );
    for name in Column::Email.accepted_names() {
        assert!(message.contains(name), "{name} missing in {message}");
    }
}

#[test]
fn m2_single_column_without_address_header_is_not_csv() {
    let e = read_err("m2_malformed_single_column_not_csv.txt");
    assert_eq!(
        e,
        FileError::NotCsv {
            first_line: "Name|Phone|Department".into()
        }
    );
    assert!(e.to_string().contains("commas, semicolons or tabs"));
}

#[test]
fn m2_file_without_header_line_says_to_add_one() {
    let e = read_err("m2_malformed_headerless_address_list.csv");
    assert_eq!(
        e,
        FileError::MissingHeader {
            address: "jane@example.com".into()
        }
    );
    assert!(e.to_string().contains("add a header line"));
}

#[test]
fn m2_duplicate_mapped_columns_are_a_file_error() {
    let e = parse_import(
        b"email,E-Mail Address,first name\r\na@x.com,b@x.com,A\r\n",
        &ImportOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        FileError::DuplicateColumn {
            column: Column::Email,
            first: "email".into(),
            second: "E-Mail Address".into()
        }
    );
    assert!(e.to_string().contains("keep one"));
}

#[test]
fn m2_size_and_row_limits_are_file_errors() {
    let bytes = fixture("m2_excel_multiline_notes.csv");
    let small = ImportOptions {
        max_bytes: 100,
        ..ImportOptions::default()
    };
    assert_eq!(
        parse_import(&bytes, &small).unwrap_err(),
        FileError::TooLarge {
            size: bytes.len(),
            limit: 100
        }
    );
    let few = ImportOptions {
        max_rows: 2,
        ..ImportOptions::default()
    };
    let e = parse_import(&bytes, &few).unwrap_err();
    assert_eq!(e, FileError::TooManyRows { limit: 2, line: 8 });
    assert!(e.to_string().contains("split it"), "{e}");
    let exact = ImportOptions {
        max_rows: 5,
        ..ImportOptions::default()
    };
    assert_eq!(parse_import(&bytes, &exact).unwrap().rows.len(), 5);
}

#[test]
fn m2_pasted_text_without_trailing_newline_is_read() {
    let file = parse_import(
        "Email Address;Given Name;Surname\nmax@example.com;Max;Mustermann".as_bytes(),
        &ImportOptions::default(),
    )
    .unwrap();
    assert_eq!(file.delimiter, Delimiter::Semicolon);
    let rows = parsed(&file);
    assert_eq!(rows[0].profile.last_name, set("Mustermann"));
}

#[test]
fn m2_unnamed_column_with_values_is_a_warning() {
    let file = parse_import(
        b"email,,first_name,\r\na@x.com,,A,\r\nb@x.com,stray,B,\r\n",
        &ImportOptions::default(),
    )
    .unwrap();
    assert_eq!(
        file.warnings,
        [FileWarning::UnnamedColumnHasValues {
            position: 2,
            line: 3
        }]
    );
    assert_eq!(parsed(&file).len(), 2);
}

#[test]
fn m2_results_serialise_for_the_review_api() {
    let file = read("m2_row_errors.csv");
    let json = serde_json::to_value(&file).unwrap();
    assert_eq!(json["encoding"], "utf-8");
    assert_eq!(json["delimiter"], "comma");
    assert_eq!(json["rows"][0]["outcome"], "parsed");
    let profile = json["rows"][0]["profile"].as_object().unwrap();
    assert_eq!(profile["notes"], serde_json::Value::Null, "cleared: null");
    assert!(!profile.contains_key("company"), "absent column: left out");
    assert_eq!(json["rows"][1]["outcome"], "rejected");
    assert_eq!(
        json["rows"][1]["errors"][0]["kind"]["code"],
        "invalid_address"
    );
    let back: ImportFile = serde_json::from_value(json).unwrap();
    assert_eq!(back, file);
}
