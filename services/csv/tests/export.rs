//! M2 exports: formula-safe cells, quoting, BOM, CRLF, the sample CSV, and
//! that what Roster exports imports back unchanged.

use roster_csv::{
    escape_formula, parse_import, sample_csv, users_csv, Column, CsvWriter, Delimiter,
    ExportOptions, ImportOptions, RowOutcome, UserRecord, FORMULA_TRIGGERS, USER_HEADER,
};
use roster_events::{Address, Profile};

#[test]
fn m2_sample_csv_parses_cleanly_with_our_own_parser() {
    let sample = sample_csv("example.com");
    let file = parse_import(sample.as_bytes(), &ImportOptions::default()).unwrap();
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    assert!(file.bom);
    assert_eq!(file.delimiter, Delimiter::Comma);
    let header: Vec<&str> = file.header.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(header, USER_HEADER);
    assert!(file.header.iter().all(|h| h.column.is_some()));
    let rows: Vec<_> = file
        .rows
        .iter()
        .map(|r| match r {
            RowOutcome::Parsed(p) => p,
            RowOutcome::Rejected(r) => panic!("sample row rejected: {:?}", r.errors),
        })
        .collect();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.address.domain_str() == "example.com"));
    let aliases = rows[0].aliases.as_ref().unwrap();
    assert_eq!(aliases.len(), 2, "one user with two aliases");
    assert!(aliases.iter().all(|a| a.domain_str() == "example.com"));
    let notes = rows[1].profile.notes.clone().flatten().unwrap();
    assert!(
        notes.contains('\n'),
        "one multi-line quoted note: {notes:?}"
    );
    assert!(
        sample.contains("\"Works part-time.\n"),
        "quoted in the file"
    );
    // Physical lines: the multi-line note pushes the third user to line 5.
    let lines: Vec<u64> = file.rows.iter().map(RowOutcome::line).collect();
    assert_eq!(lines, [2, 3, 5]);
}

#[test]
fn m2_sample_csv_uses_the_managed_domain_it_is_given() {
    let sample = sample_csv("Contoso.EU.");
    assert!(sample.contains("jane.doe@contoso.eu,"));
    assert!(!sample.contains("example.com"));
    let file = parse_import(sample.as_bytes(), &ImportOptions::default()).unwrap();
    assert_eq!(file.parsed_rows().count(), 3);
}

#[test]
fn m2_sample_csv_is_excel_friendly_utf8_bom_and_crlf() {
    let sample = sample_csv("example.com");
    assert!(sample.starts_with("\u{FEFF}email,first_name,last_name,aliases,"));
    let records = sample.matches("\r\n").count();
    assert_eq!(records, 4, "header and three rows end in CRLF");
}

fn user(address: &str, aliases: &[&str], profile: Profile) -> (Address, Vec<Address>, Profile) {
    (
        Address::parse(address).unwrap(),
        aliases.iter().map(|a| Address::parse(a).unwrap()).collect(),
        profile,
    )
}

#[test]
fn m2_exported_users_never_start_a_formula_and_import_back_unchanged() {
    let users = [
        user(
            "mal@example.com",
            &["m1@example.com", "m2@example.com"],
            Profile {
                first_name: Some("=HYPERLINK(\"http://evil\",\"click\")".into()),
                last_name: Some("@SUM(A1:A9)".into()),
                home_phone: Some("+1 212 555 0100".into()),
                mobile: Some("-1".into()),
                company: Some("  =1+1".into()),
                department: Some("Sales, EMEA".into()),
                notes: Some("line one\nline \"two\"".into()),
            },
        ),
        user("plain@example.com", &[], Profile::default()),
    ];
    let records = users.iter().map(|(address, aliases, profile)| UserRecord {
        address,
        aliases,
        profile,
    });
    let bytes = users_csv(records, &ExportOptions::default());
    let text = String::from_utf8(bytes.clone()).unwrap();
    let expected = concat!(
        "\u{FEFF}email,first_name,last_name,aliases,home_phone,mobile,company,department,notes\r\n",
        "mal@example.com,\"'=HYPERLINK(\"\"http://evil\"\",\"\"click\"\")\",'@SUM(A1:A9),m1@example.com; m2@example.com,'+1 212 555 0100,'-1,'  =1+1,\"Sales, EMEA\",\"line one\nline \"\"two\"\"\"\r\n",
        "plain@example.com,,,,,,,,\r\n",
    );
    assert_eq!(text, expected);

    // Every cell as a spreadsheet sees it: none starts a formula.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(&bytes[3..]);
    for record in reader.records() {
        for cell in record.unwrap().iter() {
            let first = cell.trim_start_matches(' ').chars().next();
            assert!(
                !matches!(first, Some('=' | '+' | '-' | '@' | '\t' | '\r')),
                "{cell:?}"
            );
        }
    }

    // And the export imports back to the same users.
    let file = parse_import(&bytes, &ImportOptions::default()).unwrap();
    for ((address, aliases, profile), row) in users.iter().zip(file.parsed_rows()) {
        assert_eq!(&row.address, address);
        assert_eq!(row.aliases.as_ref().unwrap(), aliases);
        // Exactly: the escaped "  =1+1" keeps its spaces.
        assert_eq!(&row.profile.to_new_profile(), profile);
    }
    assert_eq!(file.errors().count(), 0);
}

#[test]
fn m2_conflicts_export_uses_the_generic_writer() {
    let mut writer = CsvWriter::new(
        Vec::new(),
        &ExportOptions {
            bom: false,
            delimiter: Delimiter::Semicolon,
        },
    )
    .unwrap();
    writer
        .write_record(["address", "reason", "flagged_at", "delete_at"])
        .unwrap();
    writer
        .write_record([
            "-x@example.com",
            "missing",
            "2025-01-01T00:00:00Z",
            "never; kept",
        ])
        .unwrap();
    let out = String::from_utf8(writer.into_inner().unwrap()).unwrap();
    assert_eq!(
        out,
        "address;reason;flagged_at;delete_at\r\n'-x@example.com;missing;2025-01-01T00:00:00Z;\"never; kept\"\r\n"
    );
}

#[test]
fn m2_formula_escape_covers_cells_starting_after_spaces() {
    assert_eq!(escape_formula("   @x"), "'   @x");
    assert_eq!(escape_formula("a@x"), "a@x");
    assert_eq!(Column::ALL.map(Column::name), USER_HEADER);
}

/// The addresses of users (and aliases) that a spreadsheet would read as
/// a formula, or whose first character is the escape quote.
const HOSTILE_ADDRESSES: [&str; 8] = [
    "-info@example.com",
    "+tag@example.com",
    "=cmd@example.com",
    "'q@example.com",
    "'-x@example.com",
    "''@example.com",
    "@@example.com",
    "plain@example.com",
];

/// Profile values of every kind an export must escape and an import undo:
/// formula starts, the quote itself, full-width forms, line breaks.
const HOSTILE_VALUES: [&str; 14] = [
    "=1+2",
    "'=1+2",
    "+44 20 7946 0000",
    "'+44 20 7946 0000",
    "-5",
    "'-x",
    "@SUM(A1)",
    "'@x",
    "''",
    "'",
    "'t Hooft",
    "\u{FF1D}1+1",
    "=HYPERLINK(\"http://evil\",\"click\")",
    "Sales, EMEA",
];

/// Notes may also hold tabs and carriage returns (Profile::check).
const HOSTILE_NOTES: [&str; 5] = [
    "\tindented",
    "\r\nfirst line empty",
    "line one\r\nline two",
    "=1+2\nsecond",
    "'\tx",
];

fn hostile_users() -> Vec<(Address, Vec<Address>, Profile)> {
    let mut users = Vec::new();
    for (i, value) in HOSTILE_VALUES.iter().enumerate() {
        let address = match HOSTILE_ADDRESSES.get(i) {
            Some(a) if !a.starts_with('@') => a.to_string(),
            _ => format!("user{i}@example.com"),
        };
        // The first alias decides whether the aliases cell needs escaping.
        let aliases: Vec<String> = match i % 3 {
            0 => vec![
                format!("-alias{i}@example.com"),
                format!("b{i}@example.com"),
            ],
            1 => vec![format!("'alias{i}@example.com")],
            _ => vec![],
        };
        let v = |s: &str| Some(s.to_string());
        users.push((
            Address::parse(&address).unwrap(),
            aliases.iter().map(|a| Address::parse(a).unwrap()).collect(),
            Profile {
                first_name: v(value),
                last_name: v(HOSTILE_VALUES[(i + 1) % HOSTILE_VALUES.len()]),
                home_phone: v(HOSTILE_VALUES[(i + 2) % HOSTILE_VALUES.len()]),
                mobile: v(HOSTILE_VALUES[(i + 3) % HOSTILE_VALUES.len()]),
                company: v(HOSTILE_VALUES[(i + 4) % HOSTILE_VALUES.len()]),
                department: v(HOSTILE_VALUES[(i + 5) % HOSTILE_VALUES.len()]),
                notes: v(HOSTILE_NOTES[i % HOSTILE_NOTES.len()]),
            },
        ));
    }
    users
}

fn export(users: &[(Address, Vec<Address>, Profile)]) -> Vec<u8> {
    users_csv(
        users.iter().map(|(address, aliases, profile)| UserRecord {
            address,
            aliases,
            profile,
        }),
        &ExportOptions::default(),
    )
}

// M2 "exports never let a cell start a formula", and import undoes exactly
// what export did: export, import, export again gives the same bytes.
#[test]
fn m2_export_import_export_is_byte_identical_for_hostile_values() {
    let users = hostile_users();
    let first = export(&users);
    let file = parse_import(&first, &ImportOptions::default()).unwrap();
    let errors: Vec<String> = file.errors().map(ToString::to_string).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let back: Vec<(Address, Vec<Address>, Profile)> = file
        .parsed_rows()
        .map(|r| {
            (
                r.address.clone(),
                r.aliases.clone().unwrap(),
                r.profile.to_new_profile(),
            )
        })
        .collect();
    assert_eq!(back, users, "the import reads what was exported");
    let second = export(&back);
    assert_eq!(
        String::from_utf8_lossy(&second),
        String::from_utf8_lossy(&first)
    );
    assert_eq!(second, first);
    // No cell of it starts a formula.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(&first[3..]);
    for record in reader.records() {
        for cell in record.unwrap().iter() {
            assert!(!cell.starts_with(FORMULA_TRIGGERS), "{cell:?}");
        }
    }
}
