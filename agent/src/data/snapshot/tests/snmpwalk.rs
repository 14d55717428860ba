//! `.snmpwalk`: every type and output option, multi-line values, fixtures,
//! a real walk, errors.

use super::*;

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
