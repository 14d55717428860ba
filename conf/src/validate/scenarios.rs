//! `scenarios:`: scheduled faults, each checked with its position: a fault
//! the command line would refuse, `at` and `every` both or neither,
//! durations that are no durations or do not fit the period; a glob that
//! matches no agent is a warning.

use std::time::Duration;

use serde_saphyr::Spanned;

use super::{MAIN, Validator};
use crate::duration::format_duration;
use crate::model::{Agent, Scenario, When};
use crate::problem::Pos;
use crate::raw::RawScenario;

impl Validator<'_> {
    pub(super) fn scenarios(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<RawScenario>>>>,
        agents: &[Agent],
        expanded: bool,
    ) -> Vec<Scenario> {
        let Some(list) = raw else {
            return Vec::new();
        };
        list.value
            .iter()
            .filter_map(|s| self.scenario(s, agents, expanded))
            .collect()
    }

    fn scenario(
        &mut self,
        raw: &Spanned<RawScenario>,
        agents: &[Agent],
        expanded: bool,
    ) -> Option<Scenario> {
        let f = MAIN;
        let pos = Pos::of(raw);
        let s = &raw.value;
        let mut ok = true;
        let pattern = match &s.agents {
            None => {
                self.err(f, pos, "a scenario needs `agents` (a name or a glob)");
                ok = false;
                String::new()
            }
            Some(a) => match glob::Pattern::new(&a.value) {
                Err(e) => {
                    self.err(
                        f,
                        Pos::of(a),
                        format!("`agents`: bad glob `{}`: {e}", a.value),
                    );
                    ok = false;
                    String::new()
                }
                Ok(p) => {
                    if expanded && !agents.iter().any(|ag| p.matches(&ag.name)) {
                        self.warn(
                            f,
                            Pos::of(a),
                            format!(
                                "`agents`: `{}` matches no agent: the scenario does nothing",
                                a.value
                            ),
                        );
                    }
                    a.value.clone()
                }
            },
        };
        let fault = match &s.fault {
            None => {
                self.err(
                    f,
                    pos,
                    format!(
                        "a scenario needs `fault` (one of {})",
                        crate::FAULT_KINDS.join(", ")
                    ),
                );
                None
            }
            Some(k) => {
                match crate::Fault::parse(&k.value, s.arg.as_ref().map(|a| a.value.as_str())) {
                    Ok(fault) => Some(fault),
                    Err(e) => {
                        let at = s.arg.as_ref().filter(|_| !e.starts_with("unknown"));
                        self.err(f, at.map_or(Pos::of(k), Pos::of), format!("`fault`: {e}"));
                        None
                    }
                }
            }
        };
        let when = match (&s.at, &s.every) {
            (Some(at), None) => Some(When::At(self.duration(
                f,
                Some(at),
                Duration::ZERO,
                "at",
                true,
            ))),
            (None, Some(every)) => Some(When::Every(self.duration(
                f,
                Some(every),
                Duration::from_secs(60),
                "every",
                false,
            ))),
            (Some(at), Some(_)) => {
                self.err(
                    f,
                    Pos::of(at),
                    "give `at` (once) or `every` (a period), not both",
                );
                None
            }
            (None, None) => {
                self.err(f, pos, "a scenario needs `at` (once) or `every` (a period)");
                None
            }
        };
        let duration = s
            .for_
            .as_ref()
            .map(|d| self.duration(f, Some(d), Duration::from_secs(1), "for", false));
        let jitter = self.duration(f, s.jitter.as_ref(), Duration::ZERO, "jitter", true);
        let seed = s.seed.as_ref().map_or(0, |n| n.value.0);
        if let (Some(crate::Fault::Reboot(_)), Some(d)) = (fault, &s.for_) {
            self.err(
                f,
                Pos::of(d),
                "a reboot takes no `for`: its outage is its `arg` (`arg: 5s`)",
            );
            ok = false;
        }
        if let Some(When::Every(period)) = when {
            let busy = duration.unwrap_or_default() + jitter;
            if busy > period {
                let at = s.for_.as_ref().or(s.jitter.as_ref()).map_or(pos, Pos::of);
                self.err(
                    f,
                    at,
                    format!(
                        "`for` plus `jitter` ({}) is longer than `every` ({}): each fault must end before the next",
                        format_duration(busy),
                        format_duration(period)
                    ),
                );
                ok = false;
            }
        }
        let (fault, when) = (fault?, when?);
        ok.then_some(Scenario {
            agents: pattern,
            fault,
            when,
            duration,
            jitter,
            seed,
        })
    }
}
