//! `.sapwalk`: every type, errors.

use super::*;

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
