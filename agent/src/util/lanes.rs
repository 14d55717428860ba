//! Work spread over the cores: as many lanes as are useful, lane 0 on the
//! calling thread and the others on scoped threads of their own.

/// How many threads one compile uses.
pub(crate) fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(8)
}

/// Runs `work` once per lane, lanes `1..` on threads of their own and lane 0
/// on this one; the results in lane order.
pub(crate) fn on_lanes<T: Send, R: Send>(lanes: Vec<T>, work: impl Fn(T) -> R + Sync) -> Vec<R> {
    let work = &work;
    std::thread::scope(|scope| {
        let mut lanes = lanes.into_iter();
        let first = lanes.next();
        let others: Vec<_> = lanes.map(|lane| scope.spawn(move || work(lane))).collect();
        let mut out = Vec::with_capacity(others.len() + 1);
        out.extend(first.map(work));
        for h in others {
            // Nothing here panics on input; if it did, the panic goes on
            // here as it would have on one thread.
            out.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        out
    })
}
