//! GetBulkRequest (RFC 3416 §4.2.3): `non-repeaters` plain GETNEXTs, then up
//! to `max-repetitions` rounds over the rest, cut by the configured varbind
//! limit and by the message size (whole varbinds are dropped from the end).

use super::{Ctx, ErrorStatus, Failure, Kind, Request};
use crate::wire::ber;

pub(crate) fn handle(ctx: &mut Ctx<'_>, req: &Request, out: &mut Vec<u8>) -> Result<(), Failure> {
    // The cursors are reused from request to request: no allocation once
    // they have grown to fit.
    let mut cursors = std::mem::take(ctx.cursors);
    let mut ended = std::mem::take(ctx.ended);
    let result = walk(ctx, req, out, &mut cursors, &mut ended);
    *ctx.cursors = cursors;
    *ctx.ended = ended;
    result
}

/// Sets `cursors[..names.len()]` to `names`, reusing the vectors there.
fn load<'n>(cursors: &mut Vec<Vec<u32>>, names: impl Iterator<Item = &'n [u32]>) -> usize {
    let mut n = 0;
    for name in names {
        match cursors.get_mut(n) {
            Some(c) => {
                c.clear();
                c.extend_from_slice(name);
            }
            None => cursors.push(name.to_vec()),
        }
        n += 1;
    }
    n
}

fn walk(
    ctx: &mut Ctx<'_>,
    req: &Request,
    out: &mut Vec<u8>,
    cursors: &mut Vec<Vec<u32>>,
    ended: &mut Vec<bool>,
) -> Result<(), Failure> {
    let Kind::GetBulk {
        non_repeaters,
        max_repetitions,
    } = req.kind
    else {
        return Ok(());
    };
    let n = (non_repeaters as usize).min(req.names.len());
    let mut count = 0usize;
    // Appends one GETNEXT answer for `cursor` and advances it. `None` when
    // the response is full, else whether the cursor is past the end.
    // `Err` when a variation fails the request (an `error` record).
    let mut step = |ctx: &mut Ctx<'_>, cursor: &mut Vec<u32>, index: u32, out: &mut Vec<u8>| {
        if count >= ctx.max_varbinds {
            return Ok(None);
        }
        let mark = out.len();
        let at_end = match ctx.next_served(cursor) {
            Some(obj) => {
                ctx.push_read(obj, index, out)?;
                let oid = ctx.view.oid(obj);
                cursor.clear();
                cursor.extend_from_slice(oid);
                false
            }
            None => {
                ber::push_varbind(out, cursor, &[ber::TAG_END_OF_MIB_VIEW, 0]);
                true
            }
        };
        if out.len() > ctx.budget {
            out.truncate(mark);
            return Ok(None);
        }
        count += 1;
        Ok(Some(at_end))
    };
    for (i, name) in req.names.iter().take(n).enumerate() {
        load(cursors, std::iter::once(name));
        if step(ctx, &mut cursors[0], i as u32 + 1, out)?.is_none() {
            return full(count);
        }
    }
    let m = load(cursors, req.names.iter().skip(n));
    ended.clear();
    ended.resize(m, false);
    for _ in 0..max_repetitions {
        if m == 0 || ended.iter().all(|e| *e) {
            break;
        }
        for (k, (cursor, ended)) in cursors[..m].iter_mut().zip(ended.iter_mut()).enumerate() {
            // RFC 3416 lets us stop once every repeater has reached
            // endOfMibView.
            match step(ctx, cursor, (n + k) as u32 + 1, out)? {
                None => return full(count),
                Some(at_end) => *ended = at_end,
            }
        }
    }
    Ok(())
}

/// A full response is fine as long as it carries at least one varbind.
fn full(count: usize) -> Result<(), Failure> {
    if count == 0 {
        Err((ErrorStatus::TooBig, 0))
    } else {
        Ok(())
    }
}
