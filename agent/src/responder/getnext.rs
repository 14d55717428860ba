//! GetNextRequest (RFC 3416 §4.2.2; RFC 1157 §4.1.3 for v1).

use super::{Ctx, ErrorStatus, Failure, Request};
use crate::wire::ber;

pub(crate) fn handle(ctx: &mut Ctx<'_>, req: &Request, out: &mut Vec<u8>) -> Result<(), Failure> {
    for (i, name) in req.names.iter().enumerate() {
        match ctx.next_served(name) {
            Some(obj) => ctx.push_read(obj, i as u32 + 1, out)?,
            None if ctx.v1 => return Err((ErrorStatus::NoSuchName, i as u32 + 1)),
            None => ber::push_varbind(out, name, &[ber::TAG_END_OF_MIB_VIEW, 0]),
        }
    }
    Ok(())
}
