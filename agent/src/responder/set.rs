//! SetRequest (RFC 3416 §4.2.5): every varbind is checked before any is
//! applied, so a SET is all or nothing. Writable are objects with the
//! `writecache` variation, and every existing object (the device's own
//! values included: a SET writes over them) for a community with
//! `write: true`. New objects are never created.

use super::{Ctx, ErrorStatus, Failure, Request};
use crate::data::mib::Obj;
use crate::wire::ber;
use crate::wire::value::Value;

pub(crate) fn handle(ctx: &mut Ctx<'_>, req: &Request, out: &mut Vec<u8>) -> Result<(), Failure> {
    let mut plan: Vec<(Obj, Vec<u8>)> = Vec::with_capacity(req.names.len());
    for (i, (name, value)) in req.names.iter().zip(&req.values).enumerate() {
        let index = i as u32 + 1;
        let obj = match ctx.view.get(name) {
            Ok(obj @ (Obj::Store(_) | Obj::Own(_))) => obj,
            // Live objects (sysUpTime, counters) are read-only.
            Ok(Obj::Live(_)) => return Err((ErrorStatus::NotWritable, index)),
            Err(_) if ctx.write => return Err((ErrorStatus::NoCreation, index)),
            Err(_) => return Err((ErrorStatus::NotWritable, index)),
        };
        // An `error` variation answers before the access check, as
        // snmpsim's does; a `delay` or `notification` acts on writes that
        // are allowed.
        if let Some(crate::data::variation::Variation::Error(e)) = ctx.view.variation(obj)
            && e.op.applies(true)
            && e.answer.is_some()
        {
            ctx.touch(obj, true, index)?;
        }
        if !(ctx.write || ctx.view.is_writecache(obj)) {
            return Err((ErrorStatus::NotWritable, index));
        }
        if matches!(
            value,
            Value::Null | Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView
        ) {
            return Err((ErrorStatus::WrongType, index));
        }
        let mut tlv = Vec::with_capacity(16);
        ber::push_value(&mut tlv, value);
        if ctx.view.value_tag(obj) != tlv.first().copied() {
            return Err((ErrorStatus::WrongType, index));
        }
        plan.push((obj, tlv));
    }
    for (i, (obj, _)) in plan.iter().enumerate() {
        ctx.touch(*obj, true, i as u32 + 1)?;
    }
    for (i, (obj, tlv)) in plan.into_iter().enumerate() {
        if let Some(name) = req.names.get(i) {
            ber::push_varbind(out, name, &tlv);
        }
        ctx.view.set(obj, tlv);
    }
    Ok(())
}
