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
            line: 2,
            column: 28,
            bytes: "0xE9".into(),
            declared: true,
        }
    );
    assert!(
        e.to_string()
            .contains("0xE9 on line 2, character 28, is not a character in utf-8"),
        "{e}"
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
            first_line: "Name|Phone|Department".into(),
            delimiter: None,
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

/// The (column as written, message) of every error of the row on `line`.
fn errors_of(file: &ImportFile, line: u64) -> Vec<(Option<String>, String)> {
    file.rows
        .iter()
        .find(|r| r.line() == line)
        .unwrap_or_else(|| panic!("no row on line {line}"))
        .errors()
        .iter()
        .map(|e| (e.column.clone(), e.kind.to_string()))
        .collect()
}

// M2: a UTF-8 file with a few damaged bytes is read as UTF-8 (the correct
// accents stay correct) and each damaged sequence is an error of its row,
// naming the line, the column and the character position.
#[test]
fn m2_a_utf8_file_with_a_few_bad_bytes_gives_row_errors_naming_line_and_column() {
    let bytes = [
        "\u{FEFF}Email,First Name,Last Name,Title,Notes\r\n".as_bytes(),
        "jose@example.com,José,García,,\r\n".as_bytes(),
        // A Windows-1252 é in the last name (line 3, character 26).
        b"rene@example.com,Ren\xC3\xA9,Dub\xE9is,,\r\n",
        // A cut UTF-8 sequence inside a quoted two-line note, on line 5.
        b"zoe@example.com,Zo\xC3\xAB,Smith,,\"first line\r\nsecond \xC3 line\"\r\n",
        // In the address itself: the row cannot be applied.
        b"m\xFCller@example.com,M\xC3\xBCller,,,\r\n",
        // In a column Roster ignores: ignored with it.
        b"ann@example.com,Ann,Lee,Direct\x92rice,\r\n",
    ]
    .concat();
    let file = parse_import(&bytes, &ImportOptions::default()).unwrap();
    assert_eq!(file.encoding, Encoding::Utf8);
    assert!(file
        .warnings
        .iter()
        .all(|w| !matches!(w, FileWarning::MixedEncoding { .. })));
    let first = |line: u64| {
        file.rows
            .iter()
            .find(|r| r.line() == line)
            .and_then(|r| r.parsed())
            .map(|r| r.profile.first_name.clone())
    };
    assert_eq!(first(2), Some(set("José")));
    assert_eq!(first(7), Some(set("Ann")));
    assert_eq!(
        errors_of(&file, 3),
        [(
            Some("Last Name".to_string()),
            "last_name holds 0xE9 (line 3, character 26), which is not UTF-8 although the rest of the file is: retype that character, or save the file again as 'CSV UTF-8'".to_string()
        )]
    );
    let zoe = errors_of(&file, 4);
    assert_eq!(zoe.len(), 1, "{zoe:?}");
    assert_eq!(zoe[0].0.as_deref(), Some("Notes"));
    assert!(zoe[0].1.contains("0xC3 (line 5, character 8)"), "{zoe:?}");
    let muller = errors_of(&file, 6);
    assert_eq!(muller[0].0.as_deref(), Some("Email"));
    assert!(
        muller[0].1.contains("0xFC (line 6, character 2)"),
        "{muller:?}"
    );
    assert_eq!(file.rejected_rows().count(), 3);
    // The rendered error names the row's line and the column too.
    let e = file.errors().next().unwrap().to_string();
    assert!(
        e.starts_with("line 3, column 'Last Name': last_name holds 0xE9"),
        "{e}"
    );
}

// M2: the same bytes in a file that is mostly Windows-1252 are Windows-1252,
// and the review warns that some characters looked like UTF-8.
#[test]
fn m2_a_mostly_windows_1252_file_stays_windows_1252_with_a_warning() {
    let bytes = b"email,first_name,last_name\r\nr@x.com,Ren\xE9,M\xFCller\r\ns@x.com,Stra\xDFe,\xC3\xA9t\xE9\r\n";
    let file = parse_import(bytes, &ImportOptions::default()).unwrap();
    assert_eq!(file.encoding, Encoding::Windows1252);
    assert_eq!(parsed(&file)[0].profile.first_name, set("René"));
    let warning = file
        .warnings
        .iter()
        .find(|w| matches!(w, FileWarning::MixedEncoding { characters: 1 }))
        .expect("a mixed_encoding warning");
    assert!(warning.to_string().contains("save the file as 'CSV UTF-8'"));
    assert_eq!(
        serde_json::to_value(warning).unwrap()["code"],
        "mixed_encoding"
    );
}

// M2: a named Windows-1252 with bytes Windows-1252 leaves undefined is
// csv_invalid_encoding, naming the line and the character.
#[test]
fn m2_declared_windows_1252_with_undefined_bytes_is_csv_invalid_encoding() {
    let options = ImportOptions {
        encoding: EncodingChoice::Windows1252,
        ..ImportOptions::default()
    };
    let e = parse_import(b"email,first_name\r\nr@x.com,Ren\xE9\x8D\r\n", &options).unwrap_err();
    assert_eq!(e.code(), "csv_invalid_encoding");
    assert_eq!(
        e.to_string(),
        "the file is not valid windows-1252: 0x8D on line 2, character 13, is not a character in windows-1252; save the file again as UTF-8, or choose the encoding it was saved in"
    );
}

// M2 messages: a chosen separator that the file does not use is named,
// with the one the file does use (not "not separated by commas").
#[test]
fn m2_a_chosen_delimiter_that_the_file_does_not_use_is_named() {
    let text = b"email,first_name,last_name\r\nann@x.com,Ann,Lee\r\n";
    let options = ImportOptions {
        delimiter: Some(Delimiter::Semicolon),
        ..ImportOptions::default()
    };
    let e = parse_import(text, &options).unwrap_err();
    assert_eq!(e.code(), "csv_not_csv");
    assert_eq!(
        e.to_string(),
        "the first line, 'email,first_name,last_name', has no semicolons (semicolon is the separator chosen with the request) but is separated by commas: choose that separator, or leave it out to have it detected"
    );
    // Named by an Excel "sep=" line.
    let e = parse_import(
        b"sep=\t\r\nemail;first_name\r\nann@x.com;Ann\r\n",
        &ImportOptions::default(),
    )
    .unwrap_err();
    let message = e.to_string();
    assert!(message.contains("has no tabs (tab is the separator named by the file's 'sep=' line) but is separated by semicolons: correct or remove the 'sep=' line"), "{message}");
    // A file that uses none of them: say which one was chosen.
    let e = parse_import(
        b"Name|Phone\nann|1\n",
        &ImportOptions {
            delimiter: Some(Delimiter::Tab),
            ..ImportOptions::default()
        },
    )
    .unwrap_err();
    let message = e.to_string();
    assert!(message.starts_with("the first line, 'Name|Phone', has no tabs (tab is the separator chosen with the request) and is not an address column header"), "{message}");
    assert!(!message.contains("commas"), "{message}");
}

// M2 messages: a missing domain is named as such ("u20@" is not "empty"),
// and a space next to '@' is an error, never dropped silently.
#[test]
fn m2_a_missing_domain_and_a_space_after_at_are_named() {
    let file = parse_import(
        b"email,aliases\nu20@,\nann@ example.com,\nbob@example.com,b@ example.com\n",
        &ImportOptions::default(),
    )
    .unwrap();
    assert_eq!(
        errors_of(&file, 2),
        [(
            Some("email".to_string()),
            "'u20@' is not a valid email address: the domain after '@' is missing".to_string()
        )]
    );
    assert_eq!(
        errors_of(&file, 3),
        [(
            Some("email".to_string()),
            "'ann@ example.com' is not a valid email address: there is a space next to '@': remove it".to_string()
        )]
    );
    // In an aliases cell a space separates aliases: "b@" has no domain.
    let bob = errors_of(&file, 4);
    assert!(
        bob.iter().any(|(_, m)| m
            == "alias 'b@' is not a valid email address: the domain after '@' is missing"),
        "{bob:?}"
    );
    assert_eq!(file.parsed_rows().count(), 0);
}

// M2 messages: cells are echoed at most 200 characters long, so a huge
// cell never makes a huge error or review.
#[test]
fn m2_echoed_cells_are_cut_to_200_characters() {
    let huge = "x".repeat(5 * 1024 * 1024);
    // A 5 MB header cell beside the address column.
    let text = format!("email,{huge}\nann@example.com,1\n{huge}@example.com,2\n");
    let file = parse_import(text.as_bytes(), &ImportOptions::default()).unwrap();
    let json = serde_json::to_string(&file).unwrap();
    assert!(json.len() < 4_000, "{} bytes", json.len());
    let name = &file.header[1].name;
    assert_eq!(name.chars().count(), 200);
    assert!(name.ends_with('…'));
    let warning = file.warnings[0].to_string();
    assert!(
        warning.contains(&format!("'{}…'", "x".repeat(199))),
        "{warning}"
    );
    assert!(warning.len() < 1_000);
    let e = file.errors().next().unwrap().to_string();
    assert!(e.len() < 600, "{} bytes", e.len());
    assert!(e.contains("is not a valid email address"), "{e}");
    // The same cell where the address column should be: a short error.
    let text = format!("{huge},name\nann@example.com,Ann\n");
    let e = parse_import(text.as_bytes(), &ImportOptions::default()).unwrap_err();
    assert_eq!(e.code(), "csv_no_address_column");
    assert!(e.to_string().len() < 1_000, "{} bytes", e.to_string().len());
    // A header of thousands of cells names the first ones only.
    let text = format!(
        "{}\n",
        (0..5_000)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let e = parse_import(text.as_bytes(), &ImportOptions::default()).unwrap_err();
    assert!(e.to_string().contains("and 4980 more"), "{e}");
}

/// Issue 10: a cell holding NUL (or another control character) is a row
/// error naming its column, not a reason to refuse the whole file, and the
/// other rows are read.
#[test]
fn u2_a_cell_with_nul_is_a_row_error() {
    let text = "email,first_name,aliases\n\
                ann@example.com,Ann,\n\
                b\0b@example.com,Bob,\n\
                cat@example.com,Ca\0t,\n\
                dan@example.com,Dan,d\0@example.com\n";
    let file = parse_import(text.as_bytes(), &ImportOptions::default()).unwrap();
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
            (4, vec![(Some("first_name"), "control_character")]),
            (5, vec![(Some("aliases"), "invalid_alias")]),
        ]
    );
}

/// U1: the look-alike list of issue 10 by CSV: each spelling is a row error
/// saying what to remove, and NFC / NFD spellings are one address (the
/// second is a duplicate of the first).
#[test]
fn u1_look_alike_addresses_in_a_file_are_row_errors_or_duplicates() {
    let text = "email\n\
                jos\u{E9}@example.com\n\
                jose\u{301}@example.com\n\
                jo\u{200B}hn@example.com\n\
                jo\u{AD}hn@example.com\n\
                jo\u{200D}hn@example.com\n\
                jo\u{202E}hn@example.com\n\
                \u{FF4A}ohn@example.com\n";
    let file = parse_import(text.as_bytes(), &ImportOptions::default()).unwrap();
    let codes: Vec<(u64, Vec<&str>)> = file
        .rows
        .iter()
        .map(|r| (r.line(), r.errors().iter().map(|e| e.kind.code()).collect()))
        .collect();
    assert_eq!(
        codes,
        [
            (2, vec![]),
            (3, vec!["duplicate_address"]),
            (4, vec!["invalid_address"]),
            (5, vec!["invalid_address"]),
            (6, vec!["invalid_address"]),
            (7, vec!["invalid_address"]),
            (8, vec!["invalid_address"]),
        ]
    );
    let message = file.rows[2].errors()[0].to_string();
    assert!(message.contains("invisible character"), "{message}");
    let message = file.rows[6].errors()[0].to_string();
    assert!(message.contains("compatibility form"), "{message}");
}
