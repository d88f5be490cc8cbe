//! What becomes of a handled entry: its outputs, a dead letter, or another delivery.

use std::collections::HashSet;

use crate::message::{Entry, Field, HandlerError, Output, dead_letter_fields};

/// The decision for one entry.
#[derive(Debug)]
pub enum Outcome {
    /// Commit these outputs (possibly none) and acknowledge.
    Deliver(Vec<Output>),
    /// Commit a dead-letter entry and acknowledge.
    DeadLetter(Output),
    /// Leave the entry pending for a later delivery.
    Retry(HandlerError),
}

/// The pipeline facts that decide an outcome.
pub struct Rules<'a> {
    /// The pipeline's name.
    pub pipeline: &'a str,
    /// The input stream.
    pub input: &'a str,
    /// Streams the handler may write to.
    pub outputs: &'a HashSet<String>,
    /// Where dead letters go.
    pub dead_letter: &'a str,
    /// Deliveries before a retryable failure is dead-lettered.
    pub max_attempts: u32,
    /// Largest number of fields one output may have.
    pub max_fields: usize,
    /// For a partition of a partitioned pipeline: its number. The handler names its
    /// outputs as declared (`payments`); they go to the partition's (`payments:{3}`).
    pub partition: Option<u32>,
}

impl Rules<'_> {
    /// Decides what to do with `entry` given the handler's `result`, run by `plugin`.
    pub fn decide(
        &self,
        entry: &Entry,
        plugin: &str,
        result: Result<Vec<Output>, HandlerError>,
    ) -> Outcome {
        let error = match result.map(|outputs| self.check(outputs)) {
            Ok(Ok(outputs)) => return Outcome::Deliver(outputs),
            Ok(Err(reason)) => reason,
            Err(error) if error.is_retryable() && entry.attempt < self.max_attempts => {
                return Outcome::Retry(error);
            }
            Err(HandlerError::Reject(reason)) => format!("rejected: {reason}"),
            Err(error) => format!("gave up after {} attempts: {error}", entry.attempt),
        };
        Outcome::DeadLetter(self.dead_letter(entry, plugin, &error))
    }

    /// Checks that every output goes to a declared stream and is writable.
    fn check(&self, outputs: Vec<Output>) -> Result<Vec<Output>, String> {
        for output in &outputs {
            if !self.outputs.contains(&output.stream) {
                let mut declared: Vec<_> = self.outputs.iter().map(String::as_str).collect();
                declared.sort_unstable();
                let declared = match declared.is_empty() {
                    true => "none".to_owned(),
                    false => format!("{declared:?}"),
                };
                return Err(format!(
                    "output to undeclared stream {:?} (declared outputs: {declared}); nothing was written: add {:?} to `outputs` of pipeline {:?}, or fix the handler's stream name",
                    output.stream, output.stream, self.pipeline
                ));
            }
            if output.fields.is_empty() {
                return Err(format!(
                    "output to {:?} has no fields (a stream entry needs at least one); nothing was written",
                    output.stream
                ));
            }
            if output.fields.len() > self.max_fields {
                return Err(format!(
                    "output to {:?} has {} fields, more than {}; nothing was written",
                    output.stream,
                    output.fields.len(),
                    self.max_fields
                ));
            }
        }
        let mut outputs = outputs;
        if let Some(p) = self.partition {
            for output in &mut outputs {
                output.stream = crate::partition::tagged(&output.stream, p);
            }
        }
        Ok(outputs)
    }

    /// The dead-letter entry for `entry`: metadata fields, then the original fields.
    pub fn dead_letter(&self, entry: &Entry, plugin: &str, error: &str) -> Output {
        use dead_letter_fields as f;
        let meta: [(&str, Vec<u8>); f::COUNT] = [
            (f::ERROR, error.as_bytes().to_vec()),
            (f::SOURCE, self.input.as_bytes().to_vec()),
            (f::ID, entry.id.as_bytes().to_vec()),
            (f::PIPELINE, self.pipeline.as_bytes().to_vec()),
            (f::PLUGIN, plugin.as_bytes().to_vec()),
            (f::ATTEMPTS, entry.attempt.to_string().into_bytes()),
        ];
        let mut fields: Vec<Field> = meta.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        if entry.fields.len() > self.max_fields - f::COUNT {
            // Wider than any entry Sluice writes: the letter cannot hold a copy. The
            // original stays in the input stream (acknowledged, not deleted) and the
            // reason says where.
            fields[0].1 = format!(
                "{error}; the entry's {} fields are more than a dead letter holds ({}), so they are not copied: the original is entry {} of {:?}",
                entry.fields.len(),
                self.max_fields - f::COUNT,
                entry.id,
                self.input
            )
            .into_bytes();
            return Output {
                stream: self.dead_letter.to_owned(),
                fields,
                raw_names: None,
            };
        }
        // The original names byte for byte, when some are not UTF-8.
        let raw_names = entry.raw_names.as_ref().map(|raw| {
            fields
                .iter()
                .map(|(name, _)| name.as_bytes().to_vec())
                .chain(raw.iter().cloned())
                .collect()
        });
        fields.extend(entry.fields.iter().cloned());
        Output {
            stream: self.dead_letter.to_owned(),
            fields,
            raw_names,
        }
    }
}

/// A dead letter's reason (its `sluice.error` field).
pub fn reason_of(letter: &Output) -> String {
    let reason = letter
        .fields
        .iter()
        .find(|(name, _)| name == dead_letter_fields::ERROR);
    reason.map_or_else(String::new, |(_, value)| {
        String::from_utf8_lossy(value).into_owned()
    })
}

/// The delay before delivery `attempt + 1` of entry `id`: exponential from `initial`,
/// capped at `max`, with "equal jitter" (half fixed, half spread) derived from the ID
/// and attempt, so that every check of the same entry agrees on when it is due.
pub fn backoff(
    initial: std::time::Duration,
    max: std::time::Duration,
    id: &str,
    attempt: u32,
) -> std::time::Duration {
    use std::hash::{Hash, Hasher};
    let exponent = attempt.saturating_sub(1).min(31);
    let delay = initial.saturating_mul(1u32 << exponent).min(max);
    let mut hasher = std::hash::DefaultHasher::new();
    (id, attempt).hash(&mut hasher);
    let spread = (hasher.finish() % 1_000) as u32;
    delay / 2 + (delay / 2) * spread / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn output(stream: &str, fields: usize) -> Output {
        Output {
            stream: stream.into(),
            fields: (0..fields).map(|i| (format!("f{i}"), Vec::new())).collect(),
            raw_names: None,
        }
    }

    /// The rules of the cases below: outputs to `OUT`, 3 attempts, 10 fields.
    fn rules(outputs: &HashSet<String>) -> Rules<'_> {
        Rules {
            pipeline: "p",
            input: "IN",
            outputs,
            dead_letter: "IN:dead",
            max_attempts: 3,
            max_fields: 10,
            partition: None,
        }
    }

    fn entry(attempt: u32) -> Entry {
        Entry {
            id: "1-1".into(),
            fields: vec![("a".into(), b"1".to_vec())],
            attempt,
            raw_names: None,
            trace: None,
        }
    }

    /// The reason of a dead letter (which goes to the dead-letter stream).
    fn reason(outcome: Outcome) -> String {
        match outcome {
            Outcome::DeadLetter(letter) => {
                assert_eq!(letter.stream, "IN:dead");
                String::from_utf8_lossy(&letter.fields[0].1).into_owned()
            }
            other => panic!("not dead-lettered: {other:?}"),
        }
    }

    /// What each handler result comes to, case 1: outputs to declared streams (or none)
    /// are delivered.
    #[test]
    fn outputs_to_declared_streams_are_delivered() {
        let outputs: HashSet<String> = ["OUT".to_owned()].into();
        let rules = rules(&outputs);
        assert!(matches!(
            rules.decide(&entry(1), "d", Ok(vec![output("OUT", 2)])),
            Outcome::Deliver(o) if o.len() == 1
        ));
        assert!(
            matches!(rules.decide(&entry(1), "d", Ok(Vec::new())), Outcome::Deliver(o) if o.is_empty())
        );
    }

    /// Case 2: a reject, an undeclared stream, an empty or too wide output are
    /// dead-lettered at once.
    #[test]
    fn rejects_and_bad_outputs_are_dead_lettered_at_once() {
        let outputs: HashSet<String> = ["OUT".to_owned()].into();
        let rules = rules(&outputs);
        let rejected = rules.decide(&entry(1), "d", Err(HandlerError::Reject("no".into())));
        assert_eq!(reason(rejected), "rejected: no");
        let undeclared = rules.decide(&entry(1), "d", Ok(vec![output("ELSEWHERE", 1)]));
        let undeclared = reason(undeclared);
        assert!(undeclared.contains("undeclared stream \"ELSEWHERE\""));
        assert!(
            undeclared.contains("add \"ELSEWHERE\" to `outputs` of pipeline"),
            "the fix: {undeclared}"
        );
        assert!(
            reason(rules.decide(&entry(1), "d", Ok(vec![output("OUT", 0)]))).contains("no fields")
        );
        assert!(
            reason(rules.decide(&entry(1), "d", Ok(vec![output("OUT", 11)])))
                .contains("11 fields, more than 10")
        );
    }

    /// Case 3: other failures are retried until `max_attempts`, then dead-lettered.
    #[test]
    fn failures_are_retried_until_max_attempts() {
        let outputs: HashSet<String> = ["OUT".to_owned()].into();
        let rules = rules(&outputs);
        for error in [
            HandlerError::Retry("later".into()),
            HandlerError::Trap("boom".into()),
            HandlerError::Timeout(Duration::from_secs(1)),
        ] {
            assert!(matches!(
                rules.decide(&entry(2), "d", Err(error.clone())),
                Outcome::Retry(_)
            ));
            let gave_up = reason(rules.decide(&entry(3), "d", Err(error)));
            assert!(gave_up.starts_with("gave up after 3 attempts"), "{gave_up}");
        }
    }

    /// A dead letter holds a copy of its entry when it fits the widest entry Sluice
    /// writes; a wider entry's letter names where the original stays instead.
    #[test]
    fn dead_letters_copy_what_fits_and_point_at_what_does_not() {
        let outputs = HashSet::new();
        let rules = Rules {
            pipeline: "p",
            input: "IN",
            outputs: &outputs,
            dead_letter: "IN:dead",
            max_attempts: 1,
            max_fields: 10,
            partition: None,
        };
        let entry = |n: usize| Entry {
            id: "1-1".into(),
            fields: (0..n).map(|i| (format!("f{i}"), b"v".to_vec())).collect(),
            attempt: 1,
            raw_names: None,
            trace: None,
        };
        let fits = rules.dead_letter(&entry(4), "plugin", "rejected: no");
        assert_eq!(fits.fields.len(), dead_letter_fields::COUNT + 4);
        assert_eq!(
            fits.fields[dead_letter_fields::COUNT..],
            entry(4).fields[..]
        );
        let wide = rules.dead_letter(&entry(5), "plugin", "rejected: no");
        assert_eq!(wide.fields.len(), dead_letter_fields::COUNT);
        let reason = String::from_utf8_lossy(&wide.fields[0].1).into_owned();
        assert!(
            reason.starts_with(
                "rejected: no; the entry's 5 fields are more than a dead letter holds (4)"
            ) && reason.ends_with("entry 1-1 of \"IN\""),
            "{reason}"
        );
    }

    /// Backoff doubles per attempt within its jitter band and never passes `max`.
    #[test]
    fn backoff_grows_and_is_capped() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_secs(1));
        for attempt in 1..10 {
            let nominal = (initial * 2u32.pow(attempt - 1)).min(max);
            let b = backoff(initial, max, "1-1", attempt);
            assert!(
                b >= nominal / 2 && b <= nominal,
                "attempt {attempt}: {b:?} vs {nominal:?}"
            );
            assert_eq!(
                b,
                backoff(initial, max, "1-1", attempt),
                "stable for one entry"
            );
        }
    }
}
