//! Tests of the snapshot parsers and writers: tricky lines of each format,
//! every error path, sorting, duplicates, round trips, and (ignored by
//! default) the snmpsim-data corpus and a parse-speed measurement.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::*;

fn file() -> &'static Path {
    Path::new("t.snap")
}

fn ok(text: &str, format: Format) -> Snapshot {
    match parse(text.as_bytes(), format, file()) {
        Ok(s) => s,
        Err(e) => panic!("unexpected error:\n{e}"),
    }
}

/// The single record of `text`.
fn one(text: &str, format: Format) -> Record {
    let s = ok(text, format);
    assert_eq!(s.records.len(), 1, "{:?}", s.records);
    s.records.into_iter().next().unwrap()
}

fn value(text: &str, format: Format) -> Value {
    one(text, format).value
}

/// The `(line, message)` pairs of a parse that must fail.
fn errors(text: &str, format: Format) -> Vec<(usize, String)> {
    match parse(text.as_bytes(), format, file()) {
        Ok(s) => panic!("expected errors, got {:?}", s.records),
        Err(SnapshotError::Invalid(d)) => {
            for x in &d {
                assert_eq!(x.file, file());
            }
            d.into_iter().map(|d| (d.line, d.message)).collect()
        }
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

/// Asserts one error, on `line`, whose message contains `needle`.
fn error_at(text: &str, format: Format, line: usize, needle: &str) {
    let e = errors(text, format);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, line, "{e:?}");
    assert!(e[0].1.contains(needle), "{:?} lacks {needle:?}", e[0].1);
}

/// A dotted OID (`1.3.6.1` or `.1.3.6.1`).
fn oid(s: &str) -> Oid {
    let s = s.strip_prefix('.').unwrap_or(s);
    s.split('.').map(|a| a.parse::<u32>().unwrap()).collect()
}

fn os(b: &[u8]) -> Value {
    Value::OctetString(b.to_vec())
}

fn rec(o: &str, value: Value) -> Record {
    Record {
        oid: oid(o),
        value,
        variation: None,
        line: 0,
    }
}

/// Writes `records` (sorted, distinct OIDs) and parses them back.
fn round_trip(records: &[Record], format: Format) {
    let mut out = Vec::new();
    write(records, format, &mut out).unwrap();
    let back = match parse(&out, format, file()) {
        Ok(s) => s,
        Err(e) => panic!("{e}\n--- written:\n{}", String::from_utf8_lossy(&out)),
    };
    assert!(back.warnings.is_empty(), "{:?}", back.warnings);
    assert_eq!(back.records.len(), records.len());
    for (a, b) in back.records.iter().zip(records) {
        assert_eq!(
            (&a.oid, &a.value, &a.variation),
            (&b.oid, &b.value, &b.variation),
            "\n--- written:\n{}",
            String::from_utf8_lossy(&out)
        );
    }
}

fn testdata(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/data/snapshot/testdata")
        .join(name);
    std::fs::read(&path).unwrap()
}

const REC: Format = Format::Snmprec;
const WALK: Format = Format::Snmpwalk;
const SAP: Format = Format::Sapwalk;

// ---------------------------------------------------------------- snmprec

#[test]
fn snmprec_every_type() {
    assert_eq!(value("1.3|2|-42", REC), Value::Integer(-42));
    assert_eq!(value("1.3|2|+7", REC), Value::Integer(7));
    assert_eq!(
        value("1.3|2|-9223372036854775808", REC),
        Value::Integer(i64::MIN)
    );
    assert_eq!(value("1.3|4|Linux box 5.10", REC), os(b"Linux box 5.10"));
    assert_eq!(value("1.3|4|", REC), os(b""));
    assert_eq!(value("1.3|5|", REC), Value::Null);
    assert_eq!(
        value("1.3|6|1.3.6.1.4.1.9", REC),
        Value::ObjectId(oid("1.3.6.1.4.1.9"))
    );
    assert_eq!(value("1.3|6|.1.3.6", REC), Value::ObjectId(oid("1.3.6")));
    assert_eq!(
        value("1.3|64|10.0.0.1", REC),
        Value::IpAddress([10, 0, 0, 1])
    );
    assert_eq!(value("1.3|65|4294967295", REC), Value::Counter32(u32::MAX));
    assert_eq!(value("1.3|66|0", REC), Value::Gauge32(0));
    assert_eq!(value("1.3|67|233425120", REC), Value::TimeTicks(233425120));
    assert_eq!(value("1.3|68|abc", REC), Value::Opaque(b"abc".to_vec()));
    assert_eq!(
        value("1.3|70|18446744073709551615", REC),
        Value::Counter64(u64::MAX)
    );
    assert_eq!(value("1.3|128|", REC), Value::NoSuchObject);
    assert_eq!(value("1.3|129|", REC), Value::NoSuchInstance);
    assert_eq!(value("1.3|130|", REC), Value::EndOfMibView);
}

#[test]
fn snmprec_hex_and_escapes() {
    assert_eq!(
        value("1.3|4x|00127962f940", REC),
        os(&[0, 0x12, 0x79, 0x62, 0xf9, 0x40])
    );
    assert_eq!(value("1.3|4x|414243", REC), os(b"ABC"));
    assert_eq!(value("1.3|4x|", REC), os(b""));
    assert_eq!(
        value("1.3|64x|c3dafe61", REC),
        Value::IpAddress([0xc3, 0xda, 0xfe, 0x61])
    );
    assert_eq!(
        value("1.3|68x|9f780441", REC),
        Value::Opaque(vec![0x9f, 0x78, 4, 0x41])
    );
    // pysnmp takes a 4-character IpAddress as the raw bytes (seen in real files).
    assert_eq!(value("1.3|64|uN96", REC), Value::IpAddress(*b"uN96"));
    assert_eq!(
        value(r#"1.3|4e|a\x00b\n\r\t\\\'\"\a\b\f\v|"#, REC),
        os(b"a\0b\n\r\t\\'\"\x07\x08\x0c\x0b|")
    );
    assert_eq!(value(r"1.3|2e|\x35", REC), Value::Integer(5));
}

#[test]
fn snmprec_lines_comments_and_pipes() {
    let s = ok(
        "#CISCO BAD TEMP\n\n   \n# another\r\n1.3.6.1.2.1.1.1.0|4|a|b||c\r\n.1.3.6.1.2.1.1.5.0|4| x\n  1.3.6.1.2.1.1.6.0|4|y  \n",
        REC,
    );
    let v: Vec<_> = s
        .records
        .iter()
        .map(|r| (r.line, r.value.clone()))
        .collect();
    assert_eq!(v, vec![(5, os(b"a|b||c")), (6, os(b" x")), (7, os(b"y"))]);
}

#[test]
fn snmprec_variations() {
    let r = one(
        "1.3.6.1.4.1.318.1.1.4.4.2.1.4.1|4:writecache|value=ESX Server 1 PS 2",
        REC,
    );
    assert_eq!(r.value, os(b"ESX Server 1 PS 2"));
    assert_eq!(
        r.variation,
        Some(Variation {
            name: "writecache".into(),
            params: "value=ESX Server 1 PS 2".into()
        })
    );
    let numeric = |t: &str| value(t, REC);
    assert_eq!(
        numeric("1.3|2:numeric|min=1,max=2,initial=2,wrap=1"),
        Value::Integer(2)
    );
    assert_eq!(numeric("1.3|65:numeric|min=7,max=100"), Value::Counter32(7));
    assert_eq!(numeric("1.3|67:numeric|rate=100"), Value::TimeTicks(0));
    assert_eq!(
        numeric("1.3|66:numeric|initial=12.9,rate=0"),
        Value::Gauge32(12)
    );
    assert_eq!(
        numeric("1.3|70:numeric|initial=5,,max=9"),
        Value::Counter64(5)
    );
    assert_eq!(numeric("1.3|4:writecache|hexvalue=0001"), os(&[0, 1]));
    assert_eq!(numeric("1.3|4x:writecache|value=4142"), os(b"AB"));
    // mltsplit: with `,,` present, single commas belong to the value.
    assert_eq!(numeric("1.3|4:writecache|value=a,b,,file=/x"), os(b"a,b"));
    assert_eq!(numeric("1.3|2:delay|value=5,wait=100"), Value::Integer(5));
    assert_eq!(
        numeric("1.3|6:sql|dbtype=sqlite3"),
        Value::ObjectId(vec![0, 0])
    );
    assert_eq!(numeric("1.3|4:notification|op=get"), os(b""));
    // `2:` has an empty module name: snmpsim ignores it.
    let r = one("1.3|2:|5", REC);
    assert_eq!((r.value, r.variation), (Value::Integer(5), None));
}

#[test]
fn snmprec_errors_name_their_line() {
    error_at("1.3.6|4", REC, 1, "expected OID|TAG|VALUE");
    error_at("#c\n1.3.6", REC, 2, "expected OID|TAG|VALUE");
    error_at("1.3.x|4|a", REC, 1, "bad OID");
    error_at("1.3.4294967296|4|a", REC, 1, "bad OID");
    error_at("|4|a", REC, 1, "bad OID");
    error_at("1.3|3|a", REC, 1, "unknown tag");
    error_at("1.3|4q|a", REC, 1, "unknown tag");
    error_at("1.3||a", REC, 1, "empty tag");
    error_at("1.3|:sql|x", REC, 1, "subtree variation");
    error_at("1.3|2|12a", REC, 1, "bad Integer32 value");
    error_at("1.3|65|4294967296", REC, 1, "bad Counter32");
    error_at("1.3|66|-1", REC, 1, "bad Gauge32");
    error_at("1.3|67|x", REC, 1, "bad TimeTicks");
    error_at("1.3|70|18446744073709551616", REC, 1, "bad Counter64");
    error_at("1.3|6|1..3", REC, 1, "bad OBJECT IDENTIFIER");
    error_at("1.3|64|1.2.3.256", REC, 1, "bad IpAddress");
    error_at("1.3|64x|010203", REC, 1, "needs 4 bytes");
    error_at("1.3|5|x", REC, 1, "takes no value");
    error_at("1.3|128|x", REC, 1, "takes no value");
    error_at("1.3|4x|abc", REC, 1, "bad hex value");
    error_at("1.3|2x|01", REC, 1, "hex values (x suffix) are for");
    error_at(r"1.3|4e|a\qb", REC, 1, "unknown escape");
    error_at(r"1.3|4e|ab\", REC, 1, "dangling");
    error_at(r"1.3|4e|\x4", REC, 1, "bad \\x escape");
    error_at(
        "1.3|2:numeric|initial=abc",
        REC,
        1,
        "bad numeric start value",
    );
    error_at("1.3|4:writecache|hexvalue=zz", REC, 1, "bad hex value");
    error_at("1.3|2:writecache|value=x", REC, 1, "bad Integer32 value");
    // Every broken record is reported, with its own line.
    let e = errors("1.3|2|1\n1.4|2|x\n1.5|4|ok\nbroken\n1.6|99|1\n", REC);
    let lines: Vec<usize> = e.iter().map(|e| e.0).collect();
    assert_eq!(lines, vec![2, 4, 5]);
    // The Display form names file and line.
    let err = parse(b"1.3|2|x", REC, file()).unwrap_err().to_string();
    assert!(err.starts_with("t.snap:1: bad Integer32 value"), "{err}");
}

#[test]
fn snmprec_text_under_hex_tag_is_a_warning() {
    // snmpsim-data's UPS/juniper-ac.snmprec line 2.
    let s = ok("#Juniper AC\n1.3.6.1.2.1.1.1.0|4x|Juniper\n", REC);
    assert_eq!(s.records[0].value, os(b"Juniper"));
    assert_eq!(s.warnings.len(), 1);
    assert_eq!(s.warnings[0].line, 2);
    assert!(s.warnings[0].message.contains("not hex"));
}

// --------------------------------------------------------------- snmpwalk

#[test]
fn snmpwalk_every_type() {
    let v = |t: &str| value(t, WALK);
    assert_eq!(v(".1.3 = INTEGER: -42"), Value::Integer(-42));
    assert_eq!(v(".1.3 = INTEGER: up(1)"), Value::Integer(1));
    assert_eq!(v(".1.3 = INTEGER: weird(-42) widgets"), Value::Integer(-42));
    assert_eq!(v(".1.3 = INTEGER: 21474836.47"), Value::Integer(2147483647));
    assert_eq!(v(".1.3 = INTEGER: .05"), Value::Integer(5));
    assert_eq!(v(".1.3 = INTEGER: 5 milliseconds"), Value::Integer(5));
    assert_eq!(
        v(".1.3 = STRING: \"Linux host 5.10\""),
        os(b"Linux host 5.10")
    );
    assert_eq!(
        v(".1.3 = STRING: \"say \\\"hi\\\" \\\\o/\""),
        os(b"say \"hi\" \\o/")
    );
    assert_eq!(v(".1.3 = STRING: Linux host 5.10"), os(b"Linux host 5.10"));
    assert_eq!(v(".1.3 = STRING:  two leading"), os(b" two leading"));
    assert_eq!(
        v(".1.3 = STRING: 0:c:29:ab:cd:ef"),
        os(&[0, 0xc, 0x29, 0xab, 0xcd, 0xef])
    );
    assert_eq!(v(".1.3 = STRING: "), os(b""));
    assert_eq!(v(".1.3 = \"\""), os(b""));
    assert_eq!(v(".1.3 = Hex-STRING: 41 42 0A "), os(b"AB\n"));
    assert_eq!(v(".1.3 = NsapAddress: 41 42"), os(b"AB"));
    assert_eq!(v(".1.3 = Gauge32: 4294967295"), Value::Gauge32(u32::MAX));
    assert_eq!(v(".1.3 = Gauge32: 42 seconds"), Value::Gauge32(42));
    assert_eq!(v(".1.3 = UInteger32: 7"), Value::Gauge32(7));
    assert_eq!(v(".1.3 = Unsigned32: 7"), Value::Gauge32(7));
    assert_eq!(v(".1.3 = Counter32: 123"), Value::Counter32(123));
    assert_eq!(
        v(".1.3 = Counter64: 18446744073709551615"),
        Value::Counter64(u64::MAX)
    );
    assert_eq!(
        v(".1.3 = Timeticks: (8640123) 1 day, 0:00:01.23"),
        Value::TimeTicks(8640123)
    );
    assert_eq!(v(".1.3 = 8640123"), Value::TimeTicks(8640123));
    assert_eq!(
        v(".1.3 = OID: .1.3.6.1.4.1.4294967295.0"),
        Value::ObjectId(vec![1, 3, 6, 1, 4, 1, u32::MAX, 0])
    );
    assert_eq!(v(".1.3 = OID: ccitt.0"), Value::ObjectId(vec![0, 0]));
    assert_eq!(v(".1.3 = OID: iso.3.6"), Value::ObjectId(vec![1, 3, 6]));
    assert_eq!(
        v(".1.3 = IpAddress: 10.1.2.3"),
        Value::IpAddress([10, 1, 2, 3])
    );
    assert_eq!(
        v(".1.3 = Network Address: 0A:00:00:01"),
        Value::IpAddress([10, 0, 0, 1])
    );
    assert_eq!(v(".1.3 = NULL"), Value::Null);
    assert_eq!(
        v(".1.3 = No Such Object available on this agent at this OID"),
        Value::NoSuchObject
    );
    assert_eq!(
        v(".1.3 = No Such Instance currently exists at this OID"),
        Value::NoSuchInstance
    );
    assert_eq!(
        v(".1.3 = No more variables left in this MIB View (It is past the end of the MIB tree)"),
        Value::EndOfMibView
    );
    assert_eq!(
        v(".1.3 = Wrong Type (should be INTEGER): Counter32: 123"),
        Value::Counter32(123)
    );
    assert_eq!(
        v(".1.3 = Wrong Type (should be OCTET STRING): STRING: \"x\""),
        os(b"x")
    );
    assert_eq!(v(".1.3 = OPAQUE: 01 02"), Value::Opaque(vec![1, 2]));
    assert_eq!(
        v(".1.3 = Opaque: Float: 0.5"),
        Value::Opaque(vec![0x9f, 0x78, 4, 0x3f, 0, 0, 0])
    );
    assert_eq!(
        v(".1.3 = Opaque: Double: 1.0"),
        Value::Opaque([&[0x9f, 0x79, 8][..], &1f64.to_be_bytes()].concat())
    );
    assert_eq!(
        v(".1.3 = Opaque: Counter64: 128"),
        Value::Opaque(vec![0x9f, 0x76, 2, 0, 0x80])
    );
    assert_eq!(
        v(".1.3 = Opaque: UInt64: 1"),
        Value::Opaque(vec![0x9f, 0x7b, 1, 1])
    );
    assert_eq!(
        v(".1.3 = Opaque: Int64: -1"),
        Value::Opaque(vec![0x9f, 0x7a, 1, 0xff])
    );
    assert_eq!(v(".1.3 = BITS: 80 00 0 "), os(&[0x80, 0]));
    assert_eq!(v(".1.3 = BITS: 40 a(1) "), os(&[0x40]));
    assert_eq!(v(".1.3 = BITS: 00 "), os(&[0]));
    // A two-digit bit number that reads as hex: 0x00 0x20 -> bit 10.
    assert_eq!(v(".1.3 = BITS: 00 20 10 "), os(&[0, 0x20]));
    assert_eq!(v("iso.3.6.1 = INTEGER: 1"), Value::Integer(1));
    assert_eq!(one("1.3.6.1 = INTEGER: 1", WALK).oid, oid("1.3.6.1"));
    assert_eq!(v(".1.3 = integer: 3"), Value::Integer(3));
}

#[test]
fn snmpwalk_multi_line_values() {
    let s = ok(
        concat!(
            ".1.1 = STRING: \"A\nB\r\n\n\\\"C\\\" = D\n.1.9 = INTEGER: 5\"\n",
            ".1.2 = Hex-STRING: 00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F \n10 11 \n",
            ".1.3 = STRING: unquoted\nsecond line\n\n",
            ".1.4 = BITS: 00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F \n",
            "10 15 22 30 31 37 45 47 53 54 61 62 63 68 76 79 84 86 92 94 95 100 101 108 109 111 116 117 118 124 125 126 127 131 \n",
            ".1.5 = OPAQUE: 01 \n02 \n",
            ".1.6 = INTEGER: 6\n",
        ),
        WALK,
    );
    let got: Vec<_> = s
        .records
        .iter()
        .map(|r| (r.line, r.value.clone()))
        .collect();
    let hex17: Vec<u8> = (0..=17).collect();
    let bits: Vec<u8> = (0..=16).collect();
    assert_eq!(
        got,
        vec![
            (1, os(b"A\nB\r\n\n\"C\" = D\n.1.9 = INTEGER: 5")),
            (6, os(&hex17)),
            (8, os(b"unquoted\nsecond line")),
            (11, os(&bits)),
            (13, Value::Opaque(vec![1, 2])),
            (15, Value::Integer(6)),
        ]
    );
}

#[test]
fn snmpwalk_skips_and_end_marker() {
    let s = ok(
        concat!(
            "# comment\n\n",
            ".1.3.6.1.2.1.1.1.0 = STRING: \"x\"\n",
            ".1.3.6.1.2.1.1.1.0 = No more variables left in this MIB View (It is past the end of the MIB tree)\n",
            "End of MIB\n",
        ),
        WALK,
    );
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(s.records.len(), 1);
    assert_eq!(s.records[0].value, os(b"x"));
}

#[test]
fn snmpwalk_errors_name_their_line() {
    error_at("garbage line", WALK, 1, "expected `OID = VALUE`");
    error_at(".1.3 =", WALK, 1, "missing value");
    error_at("IF-MIB::ifDescr.1 = STRING: eth0", WALK, 1, "symbolic OID");
    error_at("iso.org.dod = INTEGER: 1", WALK, 1, "symbolic OID");
    error_at(".1.3.4294967296 = INTEGER: 1", WALK, 1, "bad OID");
    error_at(".1.3 = Float: 1.5", WALK, 1, "unknown value type");
    error_at(".1.3 = hello", WALK, 1, "no `TYPE:` prefix");
    error_at(".1.3 = INTEGER: x", WALK, 1, "bad INTEGER value");
    error_at(".1.3 = INTEGER: up(x)", WALK, 1, "bad INTEGER value");
    error_at(".1.3 = Gauge32: -1", WALK, 1, "bad Gauge32 value");
    error_at(
        ".1.3 = Counter32: 4294967296",
        WALK,
        1,
        "bad Counter32 value",
    );
    error_at(".1.3 = Counter64: x", WALK, 1, "bad Counter64 value");
    error_at(".1.3 = Timeticks: (x) 0:00", WALK, 1, "bad Timeticks value");
    error_at(
        ".1.3 = OID: SNMPv2-SMI::zeroDotZero",
        WALK,
        1,
        "symbolic OID",
    );
    error_at(".1.3 = IpAddress: 1.2.3", WALK, 1, "bad IpAddress value");
    error_at(
        ".1.3 = Network Address: 0A:00:01",
        WALK,
        1,
        "bad Network Address value",
    );
    error_at(".1.3 = Hex-STRING: 41 4G", WALK, 1, "bad Hex-STRING value");
    error_at(".1.3 = Opaque: Float: x", WALK, 1, "bad Opaque value");
    error_at(".1.3 = BITS: 80 3", WALK, 1, "does not match");
    error_at(
        ".1.3 = Wrong Type (should be INTEGER) x",
        WALK,
        1,
        "bad `Wrong Type` value",
    );
    // A string that never closes is reported on its own line, and the lines
    // after it are still read as records.
    let e = errors(
        ".1.1 = STRING: \"open\n.1.2 = INTEGER: 2\n.1.3 = INTEGER: x\n",
        WALK,
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].0, 1);
    assert!(e[0].1.contains("no closing quote"));
    assert_eq!(e[1].0, 3);
    // Lines after a multi-line value keep their numbers.
    let e = errors(
        ".1.1 = STRING: \"a\nb\"\n.1.2 = Hex-STRING: 41\n42\nbad\n",
        WALK,
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, 5);
}

#[test]
fn snmpwalk_fixtures_agree() {
    // The same net-snmp 5.9.3 agent walked four ways: -ObentU and -On,
    // without MIBs and with a MIB giving DISPLAY-HINTs, enums, units, BITS
    // and a wrong type. Every form must give the same values.
    let load = |name: &str| {
        let s = parse(&testdata(name), WALK, Path::new(name)).unwrap();
        assert!(s.warnings.is_empty(), "{name}: {:?}", s.warnings);
        s.records
    };
    let bent = load("types_bentU.snmpwalk");
    // Load average and uptime change between walks.
    let stable = |r: &&Record| {
        r.oid != oid("1.3.6.1.4.1.2021.10.1.6.1") && r.oid != oid("1.3.6.1.2.1.1.3.0")
    };
    let values = |rs: &[Record]| -> Vec<(Oid, Value)> {
        rs.iter()
            .filter(stable)
            .map(|r| (r.oid.clone(), r.value.clone()))
            .collect()
    };
    for name in [
        "types_On.snmpwalk",
        "types_hints_On.snmpwalk",
        "types_hints_bentU.snmpwalk",
    ] {
        assert_eq!(values(&load(name)), values(&bent), "{name}");
    }
    let by_oid = |o: &str| bent.iter().find(|r| r.oid == oid(o)).unwrap().value.clone();
    assert_eq!(by_oid("1.3.6.1.4.1.99999.4"), Value::TimeTicks(8640123));
    assert_eq!(
        by_oid("1.3.6.1.4.1.99999.7"),
        os(b"with \"quotes\" and \x08ackslash | pipe")
    );
    assert_eq!(
        by_oid("1.3.6.1.4.1.99999.11"),
        os(&(0..=32).collect::<Vec<u8>>())
    );
    assert_eq!(by_oid("1.3.6.1.4.1.99999.14"), os("café".as_bytes()));
    assert_eq!(by_oid("1.3.6.1.4.1.99999.16"), os(b"A\nB\r\nC"));
    assert_eq!(by_oid("1.3.6.1.2.1.999.1.0"), Value::NoSuchObject);
    assert_eq!(by_oid("1.3.6.1.2.1.1.1.1"), Value::NoSuchInstance);
    assert_eq!(by_oid("1.3.6.1.6.3.99"), Value::EndOfMibView);
    match by_oid("1.3.6.1.4.1.2021.10.1.6.1") {
        Value::Opaque(b) => assert_eq!(b[..3], [0x9f, 0x78, 4]),
        other => panic!("{other:?}"),
    }
    assert_eq!(bent.len(), 21);
}

#[test]
fn snmpwalk_medium_real_walk() {
    // 2537 lines of `snmpwalk -ObentU` against net-snmp 5.9.3 (system,
    // interfaces, IP, TCP/UDP, SNMP, enterprises incl. UCD and extend).
    let s = parse(&testdata("medium.snmpwalk"), WALK, Path::new("medium")).unwrap();
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(s.records.len(), 2529);
    assert!(s.records.windows(2).all(|w| w[0].oid < w[1].oid));
    let by_oid = |o: &str| {
        s.records
            .iter()
            .find(|r| r.oid == oid(o))
            .unwrap()
            .value
            .clone()
    };
    assert_eq!(by_oid("1.3.6.1.2.1.2.1.0"), Value::Integer(4));
    assert_eq!(by_oid("1.3.6.1.2.1.1.3.0"), Value::TimeTicks(2546));
    assert_eq!(by_oid("1.3.6.1.2.1.2.2.1.6.1"), os(b""));
    assert_eq!(
        by_oid("1.3.6.1.2.1.1.1.0"),
        os(b"Linux testhost 5.10 \"quoted\" x86_64")
    );
    assert_eq!(
        by_oid("1.3.6.1.4.1.8072.1.3.2.3.1.2.5.109.117.108.116.105"),
        os(b"line onenline \"two\" \\ endnthird")
    );
    for format in [REC, WALK] {
        round_trip(&s.records, format);
    }
}

// ---------------------------------------------------------------- sapwalk

#[test]
fn sapwalk_every_type() {
    let v = |t: &str| value(t, SAP);
    assert_eq!(
        v("1.3.6.1.2.1.1.1.0             , OctetString , Hardware: x86 - Software: Windows, 2000"),
        os(b"Hardware: x86 - Software: Windows, 2000")
    );
    assert_eq!(v("1.3 , OctetString , "), os(b""));
    assert_eq!(
        v("1.3 , OctetString , 0x000e35d33d53"),
        os(&[0, 0x0e, 0x35, 0xd3, 0x3d, 0x53])
    );
    assert_eq!(v("1.3 , OctetString , 0x"), os(b""));
    assert_eq!(
        v("1.3,ObjectID,1.3.6.1.4.1.311.1.1.3.1.1"),
        Value::ObjectId(oid("1.3.6.1.4.1.311.1.1.3.1.1"))
    );
    assert_eq!(v("1.3 , TimeTicks   , 200846"), Value::TimeTicks(200846));
    assert_eq!(v("1.3 , Integer , -1"), Value::Integer(-1));
    assert_eq!(v("1.3 , Gauge , 54000000"), Value::Gauge32(54000000));
    assert_eq!(v("1.3 , Counter , 1896349"), Value::Counter32(1896349));
    assert_eq!(
        v("1.3 , Counter64 , 18446744073709551615"),
        Value::Counter64(u64::MAX)
    );
    assert_eq!(
        v("1.3.6.1.2.1.4.20.1.1.127.0.0.1, IpAddress   , 127.0.0.1"),
        Value::IpAddress([127, 0, 0, 1])
    );
    let s = ok("# c\n\n1.3.6.1.2.1.1.5.0 , OctetString , CRAY\r\n", SAP);
    assert_eq!(s.records[0].line, 3);
}

#[test]
fn sapwalk_errors_name_their_line() {
    error_at("1.3 , Integer", SAP, 1, "expected `OID, Type, Value`");
    error_at("x.3 , Integer , 1", SAP, 1, "bad OID");
    error_at("1.3 , Float , 1", SAP, 1, "unknown type");
    error_at("1.3 , Integer , 1.5", SAP, 1, "bad Integer value");
    error_at("1.3 , Counter , -1", SAP, 1, "bad Counter value");
    error_at("1.3 , Gauge , x", SAP, 1, "bad Gauge value");
    error_at("1.3 , TimeTicks , x", SAP, 1, "bad TimeTicks value");
    error_at("1.3 , Counter64 , x", SAP, 1, "bad Counter64 value");
    error_at("1.3 , IpAddress , 1.2.3", SAP, 1, "bad IpAddress value");
    error_at("1.3 , ObjectID , 1..2", SAP, 1, "bad ObjectID value");
    error_at("1.3 , OctetString , 0xzz", SAP, 1, "bad OctetString value");
    let e = errors(
        "1.3 , Integer , 1\nbad\n1.4 , Integer , 2\n1.5 , Integer , x\n",
        SAP,
    );
    assert_eq!(e.iter().map(|e| e.0).collect::<Vec<_>>(), vec![2, 4]);
}

// ------------------------------------------------- sorting and duplicates

#[test]
fn sorted_by_numeric_arcs() {
    for (format, lines) in [
        (
            REC,
            [
                "1.3.6.1.2.1.10|2|1",
                "1.3.6.1.2.1.2|2|2",
                "1.3.6.1.2.1.2.1|2|3",
                "1.3.6.1.2|2|4",
            ],
        ),
        (
            WALK,
            [
                ".1.3.6.1.2.1.10 = INTEGER: 1",
                ".1.3.6.1.2.1.2 = INTEGER: 2",
                ".1.3.6.1.2.1.2.1 = INTEGER: 3",
                ".1.3.6.1.2 = INTEGER: 4",
            ],
        ),
        (
            SAP,
            [
                "1.3.6.1.2.1.10, Integer, 1",
                "1.3.6.1.2.1.2, Integer, 2",
                "1.3.6.1.2.1.2.1, Integer, 3",
                "1.3.6.1.2, Integer, 4",
            ],
        ),
    ] {
        let s = ok(&lines.join("\n"), format);
        let got: Vec<(String, usize)> = s
            .records
            .iter()
            .map(|r| (DisplayOid(&r.oid).to_string(), r.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("1.3.6.1.2".to_string(), 4),
                ("1.3.6.1.2.1.2".to_string(), 2),
                ("1.3.6.1.2.1.2.1".to_string(), 3),
                ("1.3.6.1.2.1.10".to_string(), 1),
            ],
            "{format:?}"
        );
        assert!(s.warnings.is_empty());
    }
}

#[test]
fn duplicates_last_wins_with_a_warning() {
    for (format, text) in [
        (
            REC,
            "1.3.6.1.2.1.1.1.0|4|first\n1.3.6.1.9|2|1\n1.3.6.1.2.1.1.1.0|4|second\n1.3.6.1.2.1.1.1.0|4|third\n",
        ),
        (
            WALK,
            ".1.3.6.1.2.1.1.1.0 = STRING: \"first\"\n.1.3.6.1.9 = INTEGER: 1\n.1.3.6.1.2.1.1.1.0 = STRING: \"second\"\n.1.3.6.1.2.1.1.1.0 = STRING: \"third\"\n",
        ),
        (
            SAP,
            "1.3.6.1.2.1.1.1.0, OctetString, first\n1.3.6.1.9, Integer, 1\n1.3.6.1.2.1.1.1.0, OctetString, second\n1.3.6.1.2.1.1.1.0, OctetString, third\n",
        ),
    ] {
        let s = ok(text, format);
        assert_eq!(s.records.len(), 2);
        assert_eq!((s.records[0].line, &s.records[0].value), (4, &os(b"third")));
        let w: Vec<(usize, &str)> = s
            .warnings
            .iter()
            .map(|w| (w.line, w.message.as_str()))
            .collect();
        assert_eq!(
            w,
            vec![
                (3, "duplicate OID 1.3.6.1.2.1.1.1.0: line 3 replaces line 1"),
                (4, "duplicate OID 1.3.6.1.2.1.1.1.0: line 4 replaces line 3"),
            ],
            "{format:?}"
        );
        assert_eq!(s.warnings[0].file, file());
    }
}

// ------------------------------------------------------------ round trips

fn tricky() -> Vec<Record> {
    let mut all: Vec<u8> = (0..=255).collect();
    all.extend_from_slice(b"  ");
    vec![
        rec("1.3.6.1.2.1.1.1.0", os(b"")),
        rec("1.3.6.1.2.1.1.1.1", os(&all)),
        rec("1.3.6.1.2.1.1.1.2", os(b"a|b|c = d, e")),
        rec(
            "1.3.6.1.2.1.1.1.3",
            os(b"line one\nline \"two\"\r\n\\three"),
        ),
        rec("1.3.6.1.2.1.1.1.4", os("unicode: café ☃".as_bytes())),
        rec("1.3.6.1.2.1.1.1.5", os(b" leading and trailing ")),
        rec("1.3.6.1.2.1.1.1.6", os(b"0xdeadbeef")),
        rec("1.3.6.1.2.1.1.1.7", os(b"#not a comment")),
        rec("1.3.6.1.2.1.1.1.8", os(b"0:1a:2b")),
        rec("1.3.6.1.2.1.1.1.9", os(b"No Such Object available")),
        rec("1.3.6.1.2.1.1.1.10", os(b"\"")),
        rec("1.3.6.1.2.1.1.2.0", Value::Integer(-2147483648)),
        rec("1.3.6.1.2.1.1.2.1", Value::Integer(i64::MIN)),
        rec("1.3.6.1.2.1.1.2.2", Value::Integer(i64::MAX)),
        rec("1.3.6.1.2.1.1.3.0", Value::TimeTicks(u32::MAX)),
        rec(
            "1.3.6.1.2.1.1.4.0",
            Value::ObjectId(vec![1, 3, 6, 1, 4, 1, u32::MAX]),
        ),
        rec("1.3.6.1.2.1.1.4.1", Value::ObjectId(vec![0])),
        rec("1.3.6.1.2.1.1.5.0", Value::IpAddress([255, 0, 10, 1])),
        rec("1.3.6.1.2.1.1.6.0", Value::Counter32(u32::MAX)),
        rec("1.3.6.1.2.1.1.7.0", Value::Gauge32(0)),
        rec("1.3.6.1.2.1.1.8.0", Value::Counter64(u64::MAX)),
        rec("1.4294967295.4294967295", Value::Integer(0)),
    ]
}

/// Values only snmprec and snmpwalk can hold.
fn tricky_non_sap() -> Vec<Record> {
    vec![
        rec("1.3.6.1.2.1.1.9.0", Value::Null),
        rec("1.3.6.1.2.1.1.9.1", Value::Opaque(vec![])),
        rec(
            "1.3.6.1.2.1.1.9.2",
            Value::Opaque(vec![0x9f, 0x78, 4, 0x3f, 0, 0, 0]),
        ),
        rec("1.3.6.1.2.1.1.9.3", Value::NoSuchObject),
        rec("1.3.6.1.2.1.1.9.4", Value::NoSuchInstance),
        rec("1.3.6.1.2.1.1.9.5", Value::EndOfMibView),
    ]
}

#[test]
fn round_trip_every_format() {
    let mut both = tricky();
    both.extend(tricky_non_sap());
    both.sort_by(|a, b| a.oid.cmp(&b.oid));
    round_trip(&both, REC);
    round_trip(&both, WALK);
    round_trip(&tricky(), SAP);
}

#[test]
fn round_trip_variations() {
    let var = |o: &str, value: Value, name: &str, params: &str| Record {
        oid: oid(o),
        value,
        variation: Some(Variation {
            name: name.into(),
            params: params.into(),
        }),
        line: 0,
    };
    let records = vec![
        var(
            "1.3.6.1.1",
            Value::Integer(2),
            "numeric",
            "min=1,max=2,initial=2,wrap=1",
        ),
        var(
            "1.3.6.1.2",
            os(b"ESX Server 1 PS 2"),
            "writecache",
            "value=ESX Server 1 PS 2",
        ),
        var("1.3.6.1.3", os(b"AB"), "writecache", "value=4142"),
        var("1.3.6.1.4", os(b"a\nb"), "writecache", r"value=a\nb"),
        var("1.3.6.1.5", os(&[0, 1]), "writecache", "hexvalue=0001"),
        var("1.3.6.1.6", Value::TimeTicks(0), "numeric", "rate=100"),
        var("1.3.6.1.7", Value::Counter64(0), "sql", "dbtype=sqlite3"),
    ];
    round_trip(&records, REC);
    let mut out = Vec::new();
    write(&records, REC, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("1.3.6.1.1|2:numeric|min=1,max=2,initial=2,wrap=1\n"),
        "{text}"
    );
    assert!(
        text.contains("1.3.6.1.3|4x:writecache|value=4142\n"),
        "{text}"
    );
    assert!(
        text.contains("1.3.6.1.4|4e:writecache|value=a\\nb\n"),
        "{text}"
    );
}

#[test]
fn writers_output_is_what_snmpsim_reads() {
    let records = vec![
        rec("1.3.6.1.2.1.1.1.0", os(b"Linux box")),
        rec("1.3.6.1.2.1.1.1.1", os(b"a\"b")),
        rec("1.3.6.1.2.1.1.3.0", Value::TimeTicks(12345)),
        rec("1.3.6.1.2.1.2.2.1.6.2", os(&[0, 0x12, 0x79])),
    ];
    let text = |format| {
        let mut out = Vec::new();
        write(&records, format, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    assert_eq!(
        text(REC),
        "1.3.6.1.2.1.1.1.0|4|Linux box\n1.3.6.1.2.1.1.1.1|4|a\"b\n1.3.6.1.2.1.1.3.0|67|12345\n1.3.6.1.2.1.2.2.1.6.2|4x|001279\n"
    );
    assert_eq!(
        text(WALK),
        ".1.3.6.1.2.1.1.1.0 = STRING: \"Linux box\"\n.1.3.6.1.2.1.1.1.1 = Hex-STRING: 61 22 62 \n.1.3.6.1.2.1.1.3.0 = 12345\n.1.3.6.1.2.1.2.2.1.6.2 = Hex-STRING: 00 12 79 \n"
    );
    assert_eq!(
        text(SAP),
        "1.3.6.1.2.1.1.1.0, OctetString, Linux box\n1.3.6.1.2.1.1.1.1, OctetString, a\"b\n1.3.6.1.2.1.1.3.0, TimeTicks, 12345\n1.3.6.1.2.1.2.2.1.6.2, OctetString, 0x001279\n"
    );
}

#[test]
fn writer_refusals() {
    let mut out = Vec::new();
    let e = write(&[rec("1.3", Value::Opaque(vec![1]))], SAP, &mut out).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("Opaque"), "{e}");
    let bad_var = Record {
        variation: Some(Variation {
            name: "writecache".into(),
            params: "value=a\nb".into(),
        }),
        ..rec("1.3", os(b"a"))
    };
    assert!(write(&[bad_var], REC, &mut out).is_err());
    let empty = Record {
        oid: vec![],
        ..rec("1.3", Value::Null)
    };
    assert!(write(&[empty], WALK, &mut out).is_err());
    assert!(write(&[rec("1.3", Value::ObjectId(vec![]))], REC, &mut out).is_err());
}

// ------------------------------------------------------------------ load

#[test]
fn load_picks_the_format_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dev.snmpwalk");
    std::fs::write(&p, ".1.3.6.1.2.1.1.5.0 = STRING: \"dev\"\n").unwrap();
    assert_eq!(load(&p).unwrap().records[0].value, os(b"dev"));
    let p = dir.path().join("dev.sapwalk");
    std::fs::write(&p, "1.3.6.1.2.1.1.5.0, OctetString, dev\n").unwrap();
    assert_eq!(load(&p).unwrap().records[0].value, os(b"dev"));
    let p = dir.path().join("dev.snmprec");
    std::fs::write(&p, "1.3.6.1.2.1.1.5.0|4|dev\n").unwrap();
    assert_eq!(load(&p).unwrap().records[0].value, os(b"dev"));
    let p = dir.path().join("dev.txt");
    std::fs::write(&p, "").unwrap();
    assert!(matches!(load(&p), Err(SnapshotError::UnknownFormat { .. })));
    let missing = dir.path().join("missing.snmprec");
    match load(&missing) {
        Err(SnapshotError::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("{other:?}"),
    }
    // An empty file is an empty snapshot.
    let p = dir.path().join("empty.snmprec");
    std::fs::write(&p, "").unwrap();
    assert!(load(&p).unwrap().records.is_empty());
}

/// Every snapshot file under `dir`, recursively.
fn snapshot_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            snapshot_files(&p, out);
        } else if Format::from_path(&p).is_some() {
            out.push(p);
        }
    }
}

/// Parses every snapshot under `$AGENTCLUSTER_SNAPSHOT_CORPUS` (default
/// `/tmp/sdx`: the snmpsim-data `data/` tree with its `.bz2` files
/// unpacked), checks each round-trips through the snmprec writer, and prints
/// the parse rate. Run with
/// `cargo test --release -p agentcluster-agent snapshot::tests::corpus -- --ignored --nocapture`.
#[test]
#[ignore = "needs the snmpsim-data corpus on disk"]
fn corpus() {
    let dir = std::env::var_os("AGENTCLUSTER_SNAPSHOT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/sdx"));
    let mut files = Vec::new();
    snapshot_files(&dir, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no snapshots under {}", dir.display());
    let (mut total_records, mut total_bytes, mut total_secs) = (0usize, 0usize, 0f64);
    let mut total_warnings = 0usize;
    let mut failures = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let format = Format::from_path(f).unwrap();
        let t = Instant::now();
        let parsed = parse(&data, format, f);
        let secs = t.elapsed().as_secs_f64();
        match parsed {
            Ok(snap) => {
                total_records += snap.records.len();
                total_warnings += snap.warnings.len();
                total_bytes += data.len();
                total_secs += secs;
                let mut out = Vec::new();
                write(&snap.records, Format::Snmprec, &mut out).unwrap();
                let again = parse(&out, Format::Snmprec, f).unwrap();
                assert!(
                    again.warnings.is_empty(),
                    "{}: rewritten file has duplicates",
                    f.display()
                );
                let same = again.records.len() == snap.records.len()
                    && again.records.iter().zip(&snap.records).all(|(a, b)| {
                        a.oid == b.oid && a.value == b.value && a.variation == b.variation
                    });
                assert!(same, "{}: snmprec round trip differs", f.display());
                for w in snap.warnings.iter().take(3) {
                    println!("warning: {w}");
                }
                println!(
                    "ok {:>9} records {:>6} warnings {:>8.3}s {}",
                    snap.records.len(),
                    snap.warnings.len(),
                    secs,
                    f.display()
                );
            }
            Err(e) => failures.push(format!("{}: {e}", f.display())),
        }
    }
    println!(
        "{} files, {} records, {} warnings, {:.1} MB in {:.2}s: {:.2} M records/s, {:.0} MB/s",
        files.len(),
        total_records,
        total_warnings,
        total_bytes as f64 / 1e6,
        total_secs,
        total_records as f64 / total_secs / 1e6,
        total_bytes as f64 / total_secs / 1e6
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Parse speed on one big recording: `$AGENTCLUSTER_SNAPSHOT_BENCH` (default
/// snmpsim-data's `network/switch/cisco-c3750.snmprec`, unpacked). Run with
/// `cargo test --release -p agentcluster-agent snapshot::tests::parse_speed -- --ignored --nocapture`.
#[test]
#[ignore = "measurement; needs a large snapshot on disk"]
fn parse_speed() {
    let path = std::env::var_os("AGENTCLUSTER_SNAPSHOT_BENCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/sdx/network/switch/cisco-c3750.snmprec"));
    let data = std::fs::read(&path).unwrap();
    let format = Format::from_path(&path).unwrap();
    let mut runs = 0u32;
    let mut records = 0usize;
    let mut parsing = 0f64;
    let start = Instant::now();
    while runs < 3 || start.elapsed().as_secs_f64() < 2.0 {
        let t = Instant::now();
        let snap = parse(&data, format, &path).unwrap();
        parsing += t.elapsed().as_secs_f64();
        records = snap.records.len();
        drop(snap);
        runs += 1;
    }
    let secs = parsing / f64::from(runs);
    println!(
        "{}: {} records, {:.1} MB, {:.2} ms a parse: {:.2} M records/s, {:.0} MB/s",
        path.display(),
        records,
        data.len() as f64 / 1e6,
        secs * 1e3,
        records as f64 / secs / 1e6,
        data.len() as f64 / secs / 1e6
    );
}

#[test]
fn shipped_sample_snapshots_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mibs");
    let mut files = Vec::new();
    snapshot_files(&dir, &mut files);
    for f in files {
        let snap = load(&f).unwrap_or_else(|e| panic!("{e}"));
        assert!(!snap.records.is_empty(), "{}", f.display());
    }
}

#[test]
fn a_large_snmprec_parsed_in_halves_equals_one_pass() {
    // Past the size where two threads parse it, with a duplicate that
    // straddles the halves and a broken line in the second half.
    let mut text = String::new();
    for i in 0..120_000u32 {
        text.push_str(&format!(
            "1.3.6.1.4.1.9.{}.{}|4|value number {i}\n",
            i % 7,
            i
        ));
    }
    text.push_str("1.3.6.1.4.1.9.0.0|4|last wins\n");
    let data = text.as_bytes();
    assert!(data.len() >= super::PARALLEL_FROM);
    let whole = super::parse(data, Format::Snmprec, Path::new("big.snmprec")).unwrap();
    // the same records through the one-pass parser
    let mut sink = super::Sink {
        records: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    super::snmprec::parse(data, &mut sink);
    let mut one = sink.records;
    let mut warnings = super::sort_dedup(&mut one);
    warnings.sort();
    assert_eq!(whole.records, one);
    assert_eq!(whole.warnings.len(), warnings.len());
    assert_eq!(whole.warnings[0].line, 120_001, "{:?}", whole.warnings);
    let mut broken = text.clone();
    broken.push_str("not a record\n");
    match super::parse(broken.as_bytes(), Format::Snmprec, Path::new("big.snmprec")) {
        Err(SnapshotError::Invalid(d)) => assert_eq!(d[0].line, 120_002),
        other => panic!("{other:?}"),
    }
}
