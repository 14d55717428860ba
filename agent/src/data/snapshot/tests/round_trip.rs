//! Writing records in each format and reading them back; what the writers
//! refuse.

use super::*;

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
