//! The byte encoding of `handle-packed` (world `packed-batch-handler`,
//! sluice:plugin@0.1.3): a batch of messages as one `list<u8>`, and their results as
//! another. The grammar is in `wit/handler.wit`; integers are little-endian, `str` and
//! `bytes` a u32 length then the bytes.

use super::bindings::Failure;
use crate::message::{Entry, Output};

/// What a malformed result buffer is: the call fails as a whole (the host then calls
/// `handle` per message), with this as the reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("handle-packed returned a malformed result at byte {at}: {what}")]
pub struct Malformed {
    at: usize,
    what: &'static str,
}

/// The `messages` encoding of `entries`, read from input stream `stream`.
pub fn encode(stream: &str, entries: &[Entry]) -> Vec<u8> {
    let size: usize = entries
        .iter()
        .map(|e| {
            16 + stream.len()
                + e.id.len()
                + e.fields
                    .iter()
                    .map(|(name, value)| 8 + name.len() + value.len())
                    .sum::<usize>()
        })
        .sum();
    let mut out = Vec::with_capacity(4 + size);
    put_len(&mut out, entries.len());
    for entry in entries {
        out.extend_from_slice(&entry.attempt.to_le_bytes());
        put_bytes(&mut out, stream.as_bytes());
        put_bytes(&mut out, entry.id.as_bytes());
        put_len(&mut out, entry.fields.len());
        for (name, value) in &entry.fields {
            put_bytes(&mut out, name.as_bytes());
            put_bytes(&mut out, value);
        }
    }
    out
}

/// The results in `bytes`, which must be exactly `expected` of them.
pub fn decode(
    bytes: &[u8],
    expected: usize,
) -> Result<Vec<Result<Vec<Output>, Failure>>, Malformed> {
    let mut reader = Reader { bytes, at: 0 };
    let count = reader.len()?;
    if count != expected {
        return Err(Malformed {
            at: 0,
            what: "the result count is not the message count",
        });
    }
    let mut results = Vec::with_capacity(count);
    for _ in 0..count {
        let result = match reader.u8()? {
            0 => {
                let n = reader.len()?;
                // Each output takes at least 8 bytes: a hostile count cannot reserve more.
                let mut outputs = Vec::with_capacity(n.min(reader.left() / 8));
                for _ in 0..n {
                    let stream = reader.str()?;
                    let fields = reader.len()?;
                    let mut output = Output {
                        stream,
                        fields: Vec::with_capacity(fields.min(reader.left() / 8)),
                        raw_names: None,
                    };
                    for _ in 0..fields {
                        let name = reader.str()?;
                        let value = reader.bytes()?.to_vec();
                        output.fields.push((name, value));
                    }
                    outputs.push(output);
                }
                Ok(outputs)
            }
            1 => Err(Failure::Retry(reader.str()?)),
            2 => Err(Failure::Reject(reader.str()?)),
            _ => {
                return Err(Malformed {
                    at: reader.at - 1,
                    what: "a result tag that is not 0 (ok), 1 (retry) or 2 (reject)",
                });
            }
        };
        results.push(result);
    }
    if reader.left() != 0 {
        return Err(Malformed {
            at: reader.at,
            what: "bytes after the last result",
        });
    }
    Ok(results)
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Entries, fields and values are far below 4 GiB (Redis caps a value at 512 MiB).
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Malformed> {
        if self.left() < n {
            return Err(Malformed { at: self.at, what });
        }
        let taken = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1, "it ends where a result tag should be")?[0])
    }

    fn len(&mut self) -> Result<usize, Malformed> {
        let bytes = self.take(4, "it ends inside a length")?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
    }

    fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let len = self.len()?;
        self.take(len, "a length runs past the end")
    }

    fn str(&mut self) -> Result<String, Malformed> {
        let at = self.at;
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Malformed {
            at,
            what: "a string (output stream, field name or reason) that is not UTF-8",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, fields: &[(&str, &[u8])], attempt: u32) -> Entry {
        Entry {
            id: id.into(),
            fields: fields
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.to_vec()))
                .collect(),
            attempt,
            raw_names: None,
            trace: None,
        }
    }

    /// A results buffer written by hand, as a guest SDK writes it.
    struct Results(Vec<u8>);

    impl Results {
        fn new(count: u32) -> Self {
            Results(count.to_le_bytes().to_vec())
        }
        fn u8(mut self, v: u8) -> Self {
            self.0.push(v);
            self
        }
        fn u32(mut self, v: u32) -> Self {
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        fn bytes(self, v: &[u8]) -> Self {
            let mut s = self.u32(v.len() as u32);
            s.0.extend_from_slice(v);
            s
        }
    }

    #[test]
    fn messages_are_encoded_by_the_grammar() {
        let entries = [
            entry("1-0", &[("a", b"\x00\xff"), ("a", b"")], 1),
            entry("2-0", &[], 3),
        ];
        let bytes = encode("S", &entries);
        let mut want = vec![2, 0, 0, 0];
        want.extend([
            1, 0, 0, 0, 1, 0, 0, 0, b'S', 3, 0, 0, 0, b'1', b'-', b'0', 2, 0, 0, 0,
        ]);
        want.extend([
            1, 0, 0, 0, b'a', 2, 0, 0, 0, 0, 0xff, 1, 0, 0, 0, b'a', 0, 0, 0, 0,
        ]);
        want.extend([
            3, 0, 0, 0, 1, 0, 0, 0, b'S', 3, 0, 0, 0, b'2', b'-', b'0', 0, 0, 0, 0,
        ]);
        assert_eq!(bytes, want);
    }

    #[test]
    fn results_decode_ok_retry_and_reject_in_order() {
        let bytes = Results::new(3)
            .u8(0)
            .u32(1)
            .bytes(b"OUT")
            .u32(2)
            .bytes(b"k")
            .bytes(b"\x00v")
            .bytes("é".as_bytes())
            .bytes(b"")
            .u8(1)
            .bytes(b"later")
            .u8(2)
            .bytes(b"bad")
            .0;
        let results = decode(&bytes, 3).expect("well-formed");
        let outputs = results[0].as_ref().expect("ok");
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].stream, "OUT");
        assert_eq!(
            outputs[0].fields,
            vec![("k".into(), b"\x00v".to_vec()), ("é".into(), vec![])]
        );
        assert!(matches!(&results[1], Err(Failure::Retry(r)) if r == "later"));
        assert!(matches!(&results[2], Err(Failure::Reject(r)) if r == "bad"));
    }

    #[test]
    fn malformed_results_are_refused_with_where_and_what() {
        let ok_empty = |n| Results::new(n).u8(0).u32(0);
        let cases: Vec<(Vec<u8>, usize, &str)> = vec![
            (vec![], 1, "inside a length"),
            (ok_empty(2).0, 1, "count is not"),
            (ok_empty(1).u8(0).0, 1, "after the last result"),
            (Results::new(1).u8(7).0, 1, "result tag"),
            (Results::new(1).u8(1).u32(9).0, 1, "past the end"),
            (Results::new(1).u8(2).bytes(b"\xff").0, 1, "not UTF-8"),
            // A count of outputs the buffer cannot hold: refused, not allocated.
            (Results::new(1).u8(0).u32(u32::MAX).0, 1, "inside a length"),
        ];
        for (bytes, expected, what) in cases {
            let error = decode(&bytes, expected).expect_err("malformed").to_string();
            assert!(error.contains(what), "{error} (wanted {what:?})");
        }
        assert_eq!(decode(&ok_empty(1).0, 1).expect("well-formed").len(), 1);
    }
}
