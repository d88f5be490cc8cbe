//! W3C Trace Context in stream entries: the `traceparent` and `tracestate` fields, read
//! from an input entry and written on its outputs, so that a trace goes on through the
//! streams as it does through HTTP headers.
//!
//! The format and the parsing rules are those of the HTTP headers of the same names,
//! <https://www.w3.org/TR/trace-context/> (§3.2 `traceparent`, §3.3 `tracestate`); a
//! stream entry carries them as fields with the headers' lower-case names.

mod client;

pub use client::{ClientSpan, child_span_id, random_span_id};

use std::fmt;
use std::time::SystemTime;

/// The field that carries the parent span: `00-{trace-id}-{parent-id}-{trace-flags}`.
pub const TRACEPARENT: &str = "traceparent";
/// The field that carries vendor-specific trace data, passed on unchanged.
pub const TRACESTATE: &str = "tracestate";

/// The longest `tracestate` passed on (512 bytes is what the spec asks every vendor to
/// propagate, §3.3.1.5; a longer one is dropped, as the spec allows).
const MAX_TRACESTATE: usize = 512;

/// One span's identity as the `traceparent` field carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanContext {
    /// The trace ID: 16 bytes, not all zero.
    pub trace_id: [u8; 16],
    /// The span ID: 8 bytes, not all zero.
    pub span_id: [u8; 8],
    /// The trace flags; bit 0 is `sampled`.
    pub flags: u8,
}

impl SpanContext {
    /// Parses a `traceparent` value by the spec's rules (§3.2.2, §4.3): lower-case hex,
    /// version `ff` invalid, version `00` exactly 55 characters, a later version at least
    /// 55 with a `-` after the flags if longer (its extra parts ignored), and neither ID
    /// all zeros. `None` for anything else: then the entry has no parent.
    pub fn parse(value: &[u8]) -> Option<Self> {
        // Bytes, not text: every valid value is ASCII, and slicing text at the spec's
        // byte offsets would split a multi-byte character of an invalid one.
        let b = value;
        if b.len() < 55 {
            return None;
        }
        let version = hex_byte(&b[0..2])?;
        match version {
            0xff => return None,
            0x00 if b.len() != 55 => return None,
            _ if b.len() > 55 && b[55] != b'-' => return None,
            _ => {}
        }
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, byte) in trace_id.iter_mut().enumerate() {
            *byte = hex_byte(&b[3 + 2 * i..5 + 2 * i])?;
        }
        let mut span_id = [0u8; 8];
        for (i, byte) in span_id.iter_mut().enumerate() {
            *byte = hex_byte(&b[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&b[53..55])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            // Version 00 defines only `sampled` (bit 0); the spec (§3.2.2.5) has unknown
            // flags zeroed, not passed on.
            flags: flags & FLAG_SAMPLED,
        })
    }

    /// Whether the trace is sampled (flag bit 0): its spans are recorded.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The trace ID as 32 lower-case hex digits (as logs and trace backends show it).
    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// The span ID as 16 lower-case hex digits.
    pub fn span_id_hex(&self) -> String {
        hex::encode(self.span_id)
    }
}

/// The `traceparent` value, always of version `00` (§3.2.4: a vendor that does not know
/// a later version writes `00`).
impl fmt::Display for SpanContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            self.flags
        )
    }
}

/// The trace flag `sampled` (W3C Trace Context §3.2.2.5), the only one version 00 defines.
const FLAG_SAMPLED: u8 = 0x01;

fn hex_byte(b: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(*b.first()?)? << 4 | digit(*b.get(1)?)?)
}

/// The trace of one delivery of an entry: the span that handles it (whose ID its outputs
/// carry as their parent) and the times of its parts, recorded once it is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryTrace {
    /// The span in the entry's `traceparent`; `None` when this delivery starts a trace.
    pub parent: Option<SpanContext>,
    /// This delivery's span: the parent's trace ID (or a new one), an ID of its own, the
    /// parent's flags (or the sampling decision of a new trace).
    pub span: SpanContext,
    /// The entry's `tracestate`, passed on unchanged (§3.3: only with a valid parent).
    pub state: Option<Vec<u8>>,
    /// When the read (or claim) that delivered the entry started; never before the entry
    /// was added (its ID's time).
    pub read: SystemTime,
    /// When the handler call started and ended, once it ran.
    pub handled: Option<(SystemTime, SystemTime)>,
    /// The HTTP requests the handler call made.
    pub requests: Vec<ClientSpan>,
}

impl EntryTrace {
    /// The trace of a delivery read at `read`: the child of `parent`, or the root of a
    /// new trace (sampled if `sample_root`); new IDs come from `rand`.
    pub fn begin(
        parent: Option<SpanContext>,
        state: Option<Vec<u8>>,
        read: SystemTime,
        sample_root: bool,
    ) -> Self {
        let span_id = random_span_id();
        let span = match parent {
            Some(parent) => SpanContext { span_id, ..parent },
            None => SpanContext {
                trace_id: loop {
                    let id: [u8; 16] = rand::random();
                    if id != [0; 16] {
                        break id;
                    }
                },
                span_id,
                flags: u8::from(sample_root),
            },
        };
        Self {
            parent,
            span,
            state: if parent.is_some() { state } else { None },
            read,
            handled: None,
            requests: Vec::new(),
        }
    }

    /// The trace context every output of this delivery gets: `traceparent` naming this
    /// span, and the entry's `tracestate` if it had one that is passed on (none: any the
    /// handler wrote is removed, as the spec has an invalid one discarded).
    pub fn output_fields(&self) -> [(&'static str, Option<Vec<u8>>); 2] {
        [
            (TRACEPARENT, Some(self.span.to_string().into_bytes())),
            (TRACESTATE, self.state.clone()),
        ]
    }
}

/// The trace context an entry carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    /// Its `traceparent`, when it has exactly one and that one is valid.
    pub parent: Option<SpanContext>,
    /// Its `tracestate`, when it is well-formed and short enough to pass on.
    pub state: Option<Vec<u8>>,
    /// It has a `traceparent` field that is not valid (malformed, or more than one: the
    /// W3C test suite's `test_traceparent_duplicated` has a second one restart the trace).
    pub invalid: bool,
}

/// The trace context in `fields`.
pub fn extract(fields: &[(String, Vec<u8>)]) -> Carried {
    let mut parents = fields.iter().filter(|(n, _)| n == TRACEPARENT);
    let (first, second) = (parents.next(), parents.next());
    let parent = match (first, second) {
        (Some((_, v)), None) => SpanContext::parse(v),
        _ => None,
    };
    let state = fields
        .iter()
        .find(|(n, _)| n == TRACESTATE)
        .map(|(_, v)| v)
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_TRACESTATE
                && std::str::from_utf8(v)
                    .is_ok_and(|s| s.parse::<opentelemetry::trace::TraceState>().is_ok())
        })
        .cloned();
    Carried {
        parent,
        state,
        invalid: first.is_some() && parent.is_none(),
    }
}

/// Sets `fields`' trace context: each named field with a value replaced in place (the
/// first of its name; any later ones removed) or appended; each named without one removed
/// (a `tracestate` the handler copied from an entry whose own was not passed on).
pub fn inject(fields: &mut Vec<(String, Vec<u8>)>, context: &[(&str, Option<Vec<u8>>)]) {
    for (name, value) in context {
        let mut seen = false;
        fields.retain_mut(|(n, v)| {
            if n != name {
                return true;
            }
            let Some(value) = value.as_ref().filter(|_| !seen) else {
                return false;
            };
            seen = true;
            v.clone_from(value);
            true
        });
        if let Some(value) = value.as_ref().filter(|_| !seen) {
            fields.push(((*name).to_owned(), value.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_specs_example_and_writes_it_back() {
        let span = SpanContext::parse(EXAMPLE.as_bytes()).expect("valid");
        assert_eq!(span.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span.span_id_hex(), "00f067aa0ba902b7");
        assert!(span.sampled());
        assert_eq!(span.to_string(), EXAMPLE);
    }

    #[test]
    fn refuses_what_the_spec_calls_invalid() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            // Upper-case hex.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            // All-zero IDs.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Version ff, and version 00 with more after it.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            // A later version whose extra part does not follow a dash.
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(SpanContext::parse(bad.as_bytes()), None, "{bad:?}");
        }
        // A later version is read as 00, its extra part ignored.
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        let span = SpanContext::parse(later.as_bytes()).expect("a later version parses");
        assert_eq!(span.to_string(), EXAMPLE);
    }

    #[test]
    fn a_child_keeps_the_trace_and_flags_and_a_root_starts_one() {
        let parent = SpanContext::parse(EXAMPLE.as_bytes()).expect("valid");
        let child = EntryTrace::begin(
            Some(parent),
            Some(b"k=v".to_vec()),
            SystemTime::now(),
            false,
        );
        assert_eq!(child.span.trace_id, parent.trace_id);
        assert_ne!(child.span.span_id, parent.span_id);
        assert_eq!(child.span.flags, 1);
        assert_eq!(child.state.as_deref(), Some(&b"k=v"[..]));
        let root = EntryTrace::begin(None, Some(b"k=v".to_vec()), SystemTime::now(), true);
        assert_ne!(root.span.trace_id, parent.trace_id);
        assert!(root.span.sampled());
        assert_eq!(
            root.state, None,
            "tracestate goes only with a valid traceparent"
        );
    }

    #[test]
    fn inject_replaces_the_field_in_place_and_drops_repeats() {
        let mut fields = vec![
            ("a".to_owned(), b"1".to_vec()),
            (TRACEPARENT.to_owned(), b"old".to_vec()),
            ("b".to_owned(), b"2".to_vec()),
            (TRACEPARENT.to_owned(), b"older".to_vec()),
        ];
        inject(&mut fields, &[(TRACEPARENT, Some(b"new".to_vec()))]);
        assert_eq!(
            fields,
            vec![
                ("a".to_owned(), b"1".to_vec()),
                (TRACEPARENT.to_owned(), b"new".to_vec()),
                ("b".to_owned(), b"2".to_vec()),
            ]
        );
        inject(&mut fields, &[(TRACESTATE, Some(b"s".to_vec()))]);
        assert_eq!(fields.last().expect("a field").0, TRACESTATE);
        inject(&mut fields, &[(TRACESTATE, None)]);
        assert!(fields.iter().all(|(n, _)| n != TRACESTATE), "removed");
    }

    #[test]
    fn extract_refuses_repeated_traceparents_and_bad_tracestates() {
        let one = vec![(TRACEPARENT.to_owned(), EXAMPLE.as_bytes().to_vec())];
        let carried = extract(&one);
        assert_eq!(carried.parent.expect("parsed").to_string(), EXAMPLE);
        assert!(!carried.invalid);
        let mut two = one.clone();
        two.push((TRACEPARENT.to_owned(), EXAMPLE.as_bytes().to_vec()));
        let carried = extract(&two);
        assert_eq!(carried.parent, None, "two traceparents: invalid");
        assert!(carried.invalid);
        assert!(!extract(&[]).invalid, "none is not invalid");
        for state in [vec![b'x'; MAX_TRACESTATE + 1], b"!!!junk,,==,=\t".to_vec()] {
            let mut fields = one.clone();
            fields.push((TRACESTATE.to_owned(), state.clone()));
            assert_eq!(extract(&fields).state, None, "{state:?}");
        }
        let mut fields = one;
        fields.push((TRACESTATE.to_owned(), b"congo=t61rcWkgMzE".to_vec()));
        assert_eq!(
            extract(&fields).state.as_deref(),
            Some(&b"congo=t61rcWkgMzE"[..])
        );
    }

    #[test]
    fn multi_byte_characters_at_the_specs_offsets_are_invalid_not_a_panic() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        for bad in [
            format!("€-{id}-00f067aa0ba902b7-01"),
            format!("00-4é{}-00f067aa0ba902b7-01", &id[..29]),
            format!("00-{id}-00f067aa0ba902b7-é"),
            format!("00-{id}-00f067aa0ba902é-01"),
        ] {
            assert!(bad.len() >= 55, "{bad:?} is long enough to be looked at");
            assert_eq!(SpanContext::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn unknown_flags_are_zeroed() {
        let value = EXAMPLE.replace("-01", "-ff");
        let span = SpanContext::parse(value.as_bytes()).expect("valid");
        assert_eq!(span.flags, 0x01);
        assert!(span.to_string().ends_with("-01"));
    }
}
