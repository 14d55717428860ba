//! GetRequest (RFC 3416 §4.2.1; RFC 1157 §4.1.2 for v1).

use super::{Ctx, ErrorStatus, Failure, Request};
use crate::data::mib::Missing;
use crate::wire::ber;

pub(crate) fn handle(ctx: &mut Ctx<'_>, req: &Request, out: &mut Vec<u8>) -> Result<(), Failure> {
    for (i, name) in req.names.iter().enumerate() {
        let index = i as u32 + 1;
        match ctx.view.get(name) {
            // SNMPv1 cannot carry Counter64: such an object does not exist
            // for a v1 manager (RFC 2576 §4.2.1).
            Ok(obj) if ctx.v1 && ctx.view.is_counter64(obj) => {
                return Err((ErrorStatus::NoSuchName, index));
            }
            Ok(obj) if ctx.view.absent_at(obj, ctx.now.uptime) => {
                // Multiplexed, and not in the snapshot served now.
                if ctx.v1 {
                    return Err((ErrorStatus::NoSuchName, index));
                }
                ber::push_varbind(out, name, &[ber::TAG_NO_SUCH_INSTANCE, 0]);
            }
            Ok(obj) => ctx.push_read(obj, index, out)?,
            Err(_) if ctx.v1 => return Err((ErrorStatus::NoSuchName, index)),
            Err(missing) => {
                let tag = match missing {
                    Missing::NoSuchObject => ber::TAG_NO_SUCH_OBJECT,
                    Missing::NoSuchInstance => ber::TAG_NO_SUCH_INSTANCE,
                };
                ber::push_varbind(out, name, &[tag, 0]);
            }
        }
        if out.len() > ctx.budget {
            // It cannot fit: stop early, the caller answers tooBig.
            break;
        }
    }
    Ok(())
}
