//! A built component against its manifest: what it really imports and exports (read from
//! the binary, <https://github.com/WebAssembly/component-model/blob/main/design/mvp/Binary.md>),
//! and the `[[pipeline]]` lines that grant what it uses.

use anyhow::{Result, bail};

use super::manifest::Needs;

/// The interface names a component imports and the names it exports, at its top level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    /// Imported interfaces (`sluice:plugin/host@0.1.4`, `wasi:http/outgoing-handler@0.2.12`)
    /// and plain names (the types a world imports, like `message`).
    pub imports: Vec<String>,
    /// Exports (`handle`, `handle-packed`).
    pub exports: Vec<String>,
}

const STATE: &str = "sluice:plugin/state@";
const HTTP: &str = "wasi:http/outgoing-handler@";

impl Shape {
    /// Reads a component's top-level imports and exports (nested modules and components
    /// are skipped).
    pub fn of(bytes: &[u8]) -> Result<Self> {
        let mut shape = Shape::default();
        let mut depth = 0usize;
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            match payload? {
                wasmparser::Payload::Version { encoding, .. } => {
                    if depth == 0 && encoding != wasmparser::Encoding::Component {
                        bail!(
                            "the build made a core module, not a component (build for wasm32-wasip2)"
                        );
                    }
                    depth += 1;
                }
                wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
                wasmparser::Payload::ComponentImportSection(reader) if depth == 1 => {
                    for import in reader {
                        shape.imports.push(import?.name.name.to_owned());
                    }
                }
                wasmparser::Payload::ComponentExportSection(reader) if depth == 1 => {
                    for export in reader {
                        shape.exports.push(export?.name.name.to_owned());
                    }
                }
                _ => {}
            }
        }
        Ok(shape)
    }

    /// Whether it imports handler state.
    pub fn uses_state(&self) -> bool {
        self.imports.iter().any(|i| i.starts_with(STATE))
    }

    /// Whether it imports `wasi:http/outgoing-handler` (sends HTTP requests).
    pub fn uses_http(&self) -> bool {
        self.imports.iter().any(|i| i.starts_with(HTTP))
    }
}

/// Checks the component against what the manifest declares: it exports `handle`, imports
/// nothing Sluice does not provide, and uses no capability the manifest leaves out.
/// Returns the declared capabilities it does not use.
pub fn against(shape: &Shape, needs: &Needs) -> Result<Vec<String>> {
    if !shape.exports.iter().any(|e| e == "handle") {
        bail!(
            "the component exports no `handle` (it exports: {}): a handler exports the sluice:plugin handler interface",
            list(&shape.exports)
        );
    }
    if let Some(foreign) = shape
        .imports
        .iter()
        .filter(|i| i.contains(':'))
        .find(|i| !i.starts_with("sluice:plugin/") && !i.starts_with("wasi:"))
    {
        bail!(
            "the component imports {foreign}, which Sluice does not provide (it grants sluice:plugin/host, sluice:plugin/state, wasi:http/outgoing-handler and WASI 0.2)"
        );
    }
    if shape.uses_state() && needs.state.is_empty() {
        bail!(
            "the component uses handler state (imports sluice:plugin/state) but declares no state prefixes: add state = [\"prefix:\"] (the keys it reads and writes)"
        );
    }
    if shape.uses_http() && needs.allowed_outbound_hosts.is_empty() {
        bail!(
            "the component sends HTTP requests (imports wasi:http/outgoing-handler) but declares no hosts: add allowed_outbound_hosts = [\"https://api.example.com\"] (the origins it calls)"
        );
    }
    let mut unused = Vec::new();
    if !shape.uses_state() && !needs.state.is_empty() {
        unused.push("state".to_owned());
    }
    if !shape.uses_http() && !needs.allowed_outbound_hosts.is_empty() {
        unused.push("allowed_outbound_hosts".to_owned());
    }
    Ok(unused)
}

/// The `[[pipeline]]` lines granting what the component uses.
pub fn grant_lines(shape: &Shape, needs: &Needs) -> Vec<String> {
    let array = |items: &[String]| {
        toml::Value::Array(items.iter().cloned().map(toml::Value::String).collect()).to_string()
    };
    let mut lines = Vec::new();
    if shape.uses_state() {
        lines.push(format!("state = {}", array(&needs.state)));
    }
    if shape.uses_http() {
        lines.push(format!(
            "allowed_outbound_hosts = {}",
            array(&needs.allowed_outbound_hosts)
        ));
    }
    lines
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(imports: &[&str], exports: &[&str]) -> Shape {
        Shape {
            imports: imports.iter().map(|s| s.to_string()).collect(),
            exports: exports.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn needs(state: &[&str], hosts: &[&str]) -> Needs {
        Needs {
            state: state.iter().map(|s| s.to_string()).collect(),
            allowed_outbound_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            ..Needs::default()
        }
    }

    #[test]
    fn undeclared_capabilities_are_refused_and_unused_ones_named() {
        let stateful = shape(&["sluice:plugin/state@0.1.4"], &["handle"]);
        let err = against(&stateful, &needs(&[], &[]))
            .expect_err("refused")
            .to_string();
        assert!(err.contains("state = ["), "{err}");
        assert!(
            against(&stateful, &needs(&["o:"], &[]))
                .expect("accepted")
                .is_empty()
        );
        let http = shape(&["wasi:http/outgoing-handler@0.2.12"], &["handle"]);
        let err = against(&http, &needs(&[], &[]))
            .expect_err("refused")
            .to_string();
        assert!(err.contains("allowed_outbound_hosts"), "{err}");
        let plain = shape(&["sluice:plugin/host@0.1.4"], &["handle"]);
        assert_eq!(
            against(&plain, &needs(&["o:"], &["https://a"])).expect("accepted"),
            ["state", "allowed_outbound_hosts"]
        );
        let err = against(&shape(&[], &["run"]), &needs(&[], &[])).expect_err("refused");
        assert!(err.to_string().contains("no `handle`"), "{err}");
        let err =
            against(&shape(&["acme:x/y"], &["handle"]), &needs(&[], &[])).expect_err("refused");
        assert!(err.to_string().contains("acme:x/y"), "{err}");
    }

    #[test]
    fn grant_lines_name_only_what_is_used() {
        let both = shape(
            &[
                "sluice:plugin/state@0.1.4",
                "wasi:http/outgoing-handler@0.2.12",
            ],
            &["handle"],
        );
        assert_eq!(
            grant_lines(&both, &needs(&["order:"], &["https://pay.example.com"])),
            [
                "state = [\"order:\"]",
                "allowed_outbound_hosts = [\"https://pay.example.com\"]"
            ]
        );
        assert!(grant_lines(&shape(&[], &["handle"]), &needs(&["o:"], &[])).is_empty());
    }
}
