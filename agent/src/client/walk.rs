//! What a walk asks next, and what it keeps of each answer: subtrees in
//! OID order, each walked from its root until an answer leaves it (or says
//! endOfMibView), the excluded subtrees left out of what is kept, and
//! every answer checked to increase (an agent that answers an OID not
//! after the one asked would loop forever: net-snmp's "OID not
//! increasing"). Pure: the caller sends the requests.

use crate::wire::value::{DisplayOid, Oid, Value};

/// An answer that would make the walk loop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("OID not increasing: {} after {}", DisplayOid(got), DisplayOid(asked))]
pub struct WalkError {
    /// The OID the request asked after.
    pub asked: Oid,
    /// The OID the agent answered with, not greater.
    pub got: Oid,
}

/// A walk over some subtrees of one device.
#[derive(Debug, Clone)]
pub struct Walk {
    subtrees: Vec<Oid>,
    excludes: Vec<Oid>,
    /// The subtree walked now; `subtrees.len()` when done.
    index: usize,
    /// The last OID received in the current subtree (what the next
    /// request asks after); `None`: its root.
    last: Option<Oid>,
    counts: Vec<u64>,
}

impl Walk {
    /// A walk of `subtrees` (in any order; one inside another is walked
    /// once) without `excludes`.
    pub fn new(mut subtrees: Vec<Oid>, excludes: Vec<Oid>) -> Walk {
        subtrees.sort();
        subtrees.dedup();
        // Sorted, a subtree inside another comes right after it.
        let mut kept: Vec<Oid> = Vec::with_capacity(subtrees.len());
        for s in subtrees {
            if !kept.last().is_some_and(|k| s.starts_with(k)) {
                kept.push(s);
            }
        }
        let counts = vec![0; kept.len()];
        Walk {
            subtrees: kept,
            excludes,
            index: 0,
            last: None,
            counts,
        }
    }

    /// Goes on after `oid`, the last OID a walk before this one kept (its
    /// partial file's last record): subtrees before it are done.
    pub fn resume_after(&mut self, oid: &[u32]) {
        self.index = self.subtrees.len();
        self.last = None;
        for (i, root) in self.subtrees.iter().enumerate() {
            if oid.starts_with(root) {
                self.index = i;
                self.last = Some(oid.to_vec());
                return;
            }
            if root.as_slice() > oid {
                self.index = i;
                return;
            }
        }
    }

    /// The subtrees walked, in order, after merging.
    pub fn subtrees(&self) -> &[Oid] {
        &self.subtrees
    }

    /// How many objects were kept in each subtree, as [`Walk::subtrees`].
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// The subtree walked now.
    pub fn current(&self) -> Option<&Oid> {
        self.subtrees.get(self.index)
    }

    /// What the next GETNEXT or GETBULK asks after; `None` when the walk
    /// is done.
    pub fn next_oid(&self) -> Option<&Oid> {
        let root = self.subtrees.get(self.index)?;
        Some(self.last.as_ref().unwrap_or(root))
    }

    /// The last OID received: where a walk cut short stopped.
    pub fn position(&self) -> Option<&Oid> {
        self.last.as_ref()
    }

    /// Whether every subtree is walked.
    pub fn done(&self) -> bool {
        self.index >= self.subtrees.len()
    }

    /// The device has nothing after [`Walk::next_oid`] (an SNMPv1
    /// noSuchName): the current subtree is done.
    pub fn end_of_view(&mut self) {
        self.next_subtree();
    }

    fn next_subtree(&mut self) {
        self.index += 1;
        self.last = None;
    }

    /// Takes the varbinds of an answer to a request for
    /// [`Walk::next_oid`]; what is to be kept goes to `keep`. Stops at the
    /// first varbind outside the subtree (the next request starts the
    /// next subtree from its root).
    pub fn feed(
        &mut self,
        varbinds: Vec<(Oid, Value)>,
        keep: &mut impl FnMut(Oid, Value),
    ) -> Result<(), WalkError> {
        for (oid, value) in varbinds {
            let Some(root) = self.subtrees.get(self.index) else {
                return Ok(());
            };
            if value == Value::EndOfMibView || !oid.starts_with(root) {
                self.next_subtree();
                return Ok(());
            }
            let asked = self.last.as_ref().unwrap_or(root);
            if oid <= *asked {
                return Err(WalkError {
                    asked: asked.clone(),
                    got: oid,
                });
            }
            self.last = Some(oid.clone());
            let excluded = self.excludes.iter().any(|e| oid.starts_with(e));
            if !excluded && !matches!(value, Value::NoSuchObject | Value::NoSuchInstance) {
                self.counts[self.index] += 1;
                keep(oid, value);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(s: &str) -> Oid {
        s.split('.').map(|a| a.parse().unwrap()).collect()
    }

    fn int(oid: &str, v: i64) -> (Oid, Value) {
        (o(oid), Value::Integer(v))
    }

    #[test]
    fn subtrees_are_walked_in_order_and_nested_ones_once() {
        let w = Walk::new(
            vec![o("1.3.6.1.2.1.2"), o("1.3.6.1.2.1.1"), o("1.3.6.1.2.1.1.5")],
            vec![],
        );
        assert_eq!(w.subtrees(), &[o("1.3.6.1.2.1.1"), o("1.3.6.1.2.1.2")]);
        assert_eq!(w.next_oid(), Some(&o("1.3.6.1.2.1.1")));
    }

    #[test]
    fn a_walk_keeps_its_subtree_and_moves_on_at_its_end() {
        let mut w = Walk::new(
            vec![o("1.3.6.1.2.1.1"), o("1.3.6.1.2.1.4")],
            vec![o("1.3.6.1.2.1.1.3")],
        );
        let mut kept = Vec::new();
        let mut keep = |oid: Oid, _: Value| kept.push(oid);
        w.feed(
            vec![int("1.3.6.1.2.1.1.1.0", 1), int("1.3.6.1.2.1.1.3.0", 2)],
            &mut keep,
        )
        .unwrap();
        assert_eq!(w.next_oid(), Some(&o("1.3.6.1.2.1.1.3.0")));
        // past the subtree: the rest of a bulk answer is not kept
        w.feed(
            vec![
                int("1.3.6.1.2.1.1.5.0", 3),
                int("1.3.6.1.2.1.2.1.0", 4),
                int("1.3.6.1.2.1.4.1.0", 5),
            ],
            &mut keep,
        )
        .unwrap();
        assert_eq!(w.current(), Some(&o("1.3.6.1.2.1.4")));
        assert_eq!(w.next_oid(), Some(&o("1.3.6.1.2.1.4")));
        w.feed(
            vec![(o("1.3.6.1.2.1.4.1.0"), Value::EndOfMibView)],
            &mut keep,
        )
        .unwrap();
        assert!(w.done());
        assert_eq!(w.next_oid(), None);
        assert_eq!(kept, vec![o("1.3.6.1.2.1.1.1.0"), o("1.3.6.1.2.1.1.5.0")]);
        assert_eq!(w.counts(), &[2, 0]);
    }

    #[test]
    fn an_answer_not_after_the_question_is_an_error() {
        let mut w = Walk::new(vec![o("1.3.6.1")], vec![]);
        let mut keep = |_: Oid, _: Value| {};
        w.feed(vec![int("1.3.6.1.2.1.1.5.0", 1)], &mut keep)
            .unwrap();
        let e = w
            .feed(vec![int("1.3.6.1.2.1.1.5.0", 1)], &mut keep)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "OID not increasing: 1.3.6.1.2.1.1.5.0 after 1.3.6.1.2.1.1.5.0"
        );
        let mut w = Walk::new(vec![o("1.3.6.1")], vec![]);
        w.feed(vec![int("1.3.6.1.2.1.1.5.0", 1)], &mut keep)
            .unwrap();
        assert!(
            w.feed(vec![int("1.3.6.1.2.1.1.4.0", 1)], &mut keep)
                .is_err()
        );
        // within one bulk answer too
        let mut w = Walk::new(vec![o("1.3.6.1")], vec![]);
        assert!(
            w.feed(vec![int("1.3.6.1.5", 1), int("1.3.6.1.4", 1)], &mut keep)
                .is_err()
        );
    }

    #[test]
    fn a_resumed_walk_starts_after_the_last_oid_kept() {
        let subtrees = vec![o("1.3.6.1.2.1.1"), o("1.3.6.1.2.1.2"), o("1.3.6.1.4")];
        let mut w = Walk::new(subtrees.clone(), vec![]);
        w.resume_after(&o("1.3.6.1.2.1.2.2.1.5.3"));
        assert_eq!(w.current(), Some(&o("1.3.6.1.2.1.2")));
        assert_eq!(w.next_oid(), Some(&o("1.3.6.1.2.1.2.2.1.5.3")));
        let mut w = Walk::new(subtrees.clone(), vec![]);
        w.resume_after(&o("1.3.6.1.3.9"));
        assert_eq!(w.next_oid(), Some(&o("1.3.6.1.4")));
        let mut w = Walk::new(subtrees, vec![]);
        w.resume_after(&o("1.3.6.1.5"));
        assert!(w.done());
    }
}
