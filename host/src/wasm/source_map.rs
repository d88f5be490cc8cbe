//! Error stacks in a bundled JavaScript or TypeScript plugin's log, mapped back to the
//! project's source lines.
//!
//! `sluice build` bundles a JavaScript or TypeScript handler into one module,
//! `bundle.js`, and puts esbuild's source map for it
//! (<https://tc39.es/ecma426/>, version 3) into the component as a custom section named
//! [`SECTION`]. The engine names stack frames `function@bundle.js:LINE:COLUMN` (1-based,
//! as SpiderMonkey writes them); each becomes `function@SOURCE:LINE:COLUMN` of the
//! original file, as the project names it (`orders-check.ts:12:7`).

use std::sync::Arc;

/// The custom section holding the source map.
pub const SECTION: &str = "sluice:source-map";

/// The module name the bundle has inside the component (componentize-js's entry).
pub const BUNDLE: &str = "bundle.js";

/// A plugin's source map.
#[derive(Debug)]
pub struct SourceMap(sourcemap::SourceMap);

impl SourceMap {
    /// The source map in `component`'s [`SECTION`], if it has one that parses.
    pub fn of_component(component: &[u8]) -> Option<Arc<Self>> {
        let mut depth = 0usize;
        for payload in wasmparser::Parser::new(0).parse_all(component) {
            match payload.ok()? {
                wasmparser::Payload::Version { .. } => depth += 1,
                wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
                wasmparser::Payload::CustomSection(section)
                    if depth == 1 && section.name() == SECTION =>
                {
                    let map = sourcemap::SourceMap::from_slice(section.data()).ok()?;
                    return Some(Arc::new(Self(map)));
                }
                _ => {}
            }
        }
        None
    }

    /// `text` with every stack frame's `bundle.js:LINE:COLUMN` (after `@`, or at the
    /// start of a line) that the map covers replaced by the original source, line and
    /// column. Other text naming `bundle.js` is left alone.
    pub fn rewrite(&self, text: &str) -> String {
        let needle = format!("{BUNDLE}:");
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find(&needle) {
            out.push_str(&rest[..at]);
            let after = &rest[at + needle.len()..];
            let before = out.chars().next_back();
            let frame = matches!(before, None | Some('@' | '\n'));
            match self.position(after).filter(|_| frame) {
                Some((mapped, used)) => {
                    out.push_str(&mapped);
                    rest = &after[used..];
                }
                None => {
                    out.push_str(&needle);
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// Reads `LINE:COLUMN` at the start of `text`; returns the original position and how
    /// many bytes were read.
    fn position(&self, text: &str) -> Option<(String, usize)> {
        let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let line_len = digits(text);
        let line: u32 = text[..line_len].parse().ok()?;
        let rest = text[line_len..].strip_prefix(':')?;
        let column_len = digits(rest);
        let column: u32 = rest[..column_len].parse().ok()?;
        let token = self
            .0
            .lookup_token(line.checked_sub(1)?, column.saturating_sub(1))?;
        if token.get_dst_line() != line - 1 {
            return None;
        }
        let source = token.get_source()?;
        let mapped = format!(
            "{source}:{}:{}",
            token.get_src_line() + 1,
            token.get_src_col() + 1
        );
        Some((mapped, line_len + 1 + column_len))
    }
}

/// Appends `map` to `component` as a top-level custom section named [`SECTION`]
/// (<https://webassembly.github.io/spec/core/binary/modules.html#custom-section>: id 0,
/// the size, the name, the bytes; allowed anywhere in a component).
pub fn embed(component: &mut Vec<u8>, map: &[u8]) {
    let mut body = Vec::with_capacity(map.len() + SECTION.len() + 5);
    leb128(&mut body, SECTION.len());
    body.extend_from_slice(SECTION.as_bytes());
    body.extend_from_slice(map);
    component.push(0);
    leb128(component, body.len());
    component.extend_from_slice(&body);
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component with no sections but its header, and `map` embedded.
    fn component_with(map: &str) -> Vec<u8> {
        let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
        embed(&mut bytes, map.as_bytes());
        bytes
    }

    #[test]
    fn stack_frames_of_the_bundle_name_the_source_lines() {
        // bundle.js line 2 column 1 comes from src/check.ts line 10 column 3 ("AAAA" is
        // the origin, "AASE": column 0, source +0, +9 lines, +2 columns).
        let map = r#"{"version":3,"sources":["src/check.ts"],"names":[],"mappings":";AASE"}"#;
        let bytes = component_with(map);
        wasmparser::Validator::new()
            .validate_all(&bytes)
            .expect("still a valid component");
        let map = SourceMap::of_component(&bytes).expect("embedded");
        let text = "TypeError: x is undefined\ncheck@bundle.js:2:1\nrun@bundle.js:900:4\nbundle.js:x\nbundle.js:2:1";
        assert_eq!(
            map.rewrite(text),
            "TypeError: x is undefined\ncheck@src/check.ts:10:3\nrun@bundle.js:900:4\nbundle.js:x\nsrc/check.ts:10:3"
        );
        // Only frames: a message that names a file ending in bundle.js is left alone.
        let message = "read mybundle.js:2:1 and lib/bundle.js:2:1";
        assert_eq!(map.rewrite(message), message);
        assert!(SourceMap::of_component(b"\0asm\x0d\0\x01\0").is_none());
    }
}
