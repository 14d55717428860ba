//! `.snmprec`: every type, hex and escapes, variations, errors.

use super::*;

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
    assert_eq!(numeric("1.3|4:notification|op=get,host=127.0.0.1"), os(b""));
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
fn snmprec_hex_that_is_not_hex_is_an_error_under_every_tag() {
    // Not hex at all, an odd count of digits, too few bytes: under each hex
    // tag, on the common path and the general one alike.
    for (text, needle) in [
        ("1.3|4x|zz", "bad hex value"),
        ("1.3|4x|abc", "bad hex value"),
        ("1.3|4x|4g", "bad hex value"),
        ("1.3|68x|zz", "bad hex value"),
        ("1.3|64x|zz", "bad hex value"),
        ("1.3|64x|7f0000zz", "bad hex value"),
        ("1.3|64x|7f00", "needs 4 bytes"),
        // snmpsim-data's UPS/juniper-ac.snmprec line 2: text under a hex
        // tag is not taken for text.
        ("#Juniper AC\n1.3.6.1.2.1.1.1.0|4x|Juniper", "bad hex value"),
    ] {
        let line = text.lines().count();
        error_at(text, REC, line, needle);
    }
    // Good hex, in either case, with blanks around it.
    assert_eq!(value("1.3|4x| 4a4B ", REC), os(b"JK"));
}
