//! JavaScript and TypeScript: esbuild bundles the entry module with its npm packages and
//! the SDK (`guest-sdk/js/bundle.mjs`), componentize-js builds the bundle for a world.

use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::manifest::{Language, Needs};
use super::run::{self, Stamp};
use super::{Job, Step};

/// What the bundle exports and which WIT interfaces it imports (esbuild's metafile).
#[derive(Deserialize)]
struct Bundle {
    exports: Vec<String>,
    imports: Vec<String>,
}

pub(super) fn build(job: &Job) -> Result<Step> {
    let sdk = job.sdk.join("guest-sdk/js");
    if !sdk.join("node_modules/esbuild").is_dir()
        || !sdk.join("node_modules/.bin/componentize-js").exists()
    {
        bail!(
            "esbuild and componentize-js are not installed in {}: run scripts/setup.sh in the Sluice checkout",
            sdk.join("node_modules").display()
        );
    }
    let bundle = bundle(job, &sdk)?;
    let world = world(job.needs, &bundle)?;
    if !world.contains("http") {
        let text = std::fs::read_to_string(job.staging.join("bundle.js"))?;
        if text.contains("fetch(") {
            tracing::warn!(
                "the bundle calls fetch( but plugin.toml declares no allowed_outbound_hosts: the component is built without the fetch API, and a call fails (traps); declare the origins it calls"
            );
        }
    }
    let mut stamp = Stamp::default();
    stamp.add(std::fs::read(job.staging.join("bundle.js"))?);
    // The map too: a comment shifts the source lines the stacks must name.
    stamp.add(std::fs::read(job.staging.join("bundle.js.map"))?);
    stamp.add(&world);
    stamp.add_tree(&job.sdk.join("wit"))?;
    stamp.add_tree(&sdk.join("package.json"))?;
    if !job.force && stamp.is_current(&job.out, &job.record()) {
        return Ok(Step::up_to_date(Some(world)));
    }
    // The fetch API (componentize-js's `http` feature) only for a world with wasi:http.
    let disabled: &[&str] = if world.contains("http") {
        &["fetch-event"]
    } else {
        &["http", "fetch-event"]
    };
    run::tool(
        "componentize-js",
        Command::new(sdk.join("node_modules/.bin/componentize-js"))
            .arg("bundle.js")
            .arg("--wit")
            .arg(job.sdk.join("wit"))
            .arg("--world-name")
            .arg(&world)
            .arg("--disable")
            .args(disabled)
            .arg("-o")
            .arg(job.component())
            .current_dir(&job.staging),
    )?;
    embed_source_map(job)?;
    Ok(Step {
        world: Some(world),
        built: Some(job.component()),
        stamp: Some(stamp),
    })
}

/// Puts the bundle's source map into the component, for the daemon to map stack frames
/// in the plugin's log back to the project's lines.
fn embed_source_map(job: &Job) -> Result<()> {
    let map = job.staging.join("bundle.js.map");
    let map = std::fs::read(&map).with_context(|| format!("cannot read {}", map.display()))?;
    let component = job.component();
    let mut bytes = std::fs::read(&component)?;
    crate::wasm::source_map::embed(&mut bytes, &map);
    std::fs::write(&component, bytes)
        .with_context(|| format!("cannot write {}", component.display()))
}

/// Bundles the entry module into `bundle.js` of the build's scratch directory.
fn bundle(job: &Job, sdk: &std::path::Path) -> Result<Bundle> {
    let extension = if job.manifest.language == Language::Ts {
        "ts"
    } else {
        "js"
    };
    let entry = job
        .manifest
        .entry
        .clone()
        .unwrap_or_else(|| format!("{}.{extension}", job.manifest.name));
    let entry = job.dir.join(entry);
    if !entry.is_file() {
        bail!(
            "no entry module {}: name the module that exports `handle` in plugin.toml (entry = \"...\")",
            entry.display()
        );
    }
    let said = run::tool(
        "esbuild (guest-sdk/js/bundle.mjs)",
        Command::new("node")
            .arg(sdk.join("bundle.mjs"))
            .arg(&entry)
            .arg(job.staging.join(crate::wasm::source_map::BUNDLE))
            .current_dir(&job.dir),
    )?;
    let bundle: Bundle = serde_json::from_str(said.trim())
        .with_context(|| format!("bundle.mjs printed no summary: {said}"))?;
    if !bundle.exports.iter().any(|e| e == "handle") {
        bail!(
            "{} exports no `handle` (it exports: {}): export const handle = handler(...)",
            entry.display(),
            bundle.exports.join(", ")
        );
    }
    Ok(bundle)
}

/// The world: the manifest's (checked against the bundle), else from what the handler
/// uses and may use (granted hosts: `http-handler`; state imported: `stateful-handler`),
/// else from the exports (`handlePacked`: `packed-batch-handler`, `handleBatch`:
/// `batch-handler`, else `handler`). Declared state that the bundle never imports builds
/// a component without it (`sluice build` then says the declaration is unused).
fn world(needs: &Needs, bundle: &Bundle) -> Result<String> {
    let imports_state = bundle
        .imports
        .iter()
        .any(|i| i.starts_with("sluice:plugin/state@"));
    if imports_state && needs.state.is_empty() {
        bail!(
            "the handler imports ./state.js (handler state) but plugin.toml declares no state prefixes: add state = [\"prefix:\"] (the keys it reads and writes)"
        );
    }
    if let Some(world) = &needs.world {
        if imports_state != world.starts_with("stateful") {
            bail!(
                "world = {world:?} in plugin.toml {} handler state, but the handler {}: drop `world` (it follows from the rest) or fix it",
                if imports_state { "has no" } else { "has" },
                if imports_state {
                    "imports ./state.js"
                } else {
                    "never imports ./state.js"
                }
            );
        }
        if world.contains("http") && needs.allowed_outbound_hosts.is_empty() {
            bail!("world = {world:?} sends HTTP requests: declare allowed_outbound_hosts");
        }
        return Ok(world.clone());
    }
    let exports = |name: &str| bundle.exports.iter().any(|e| e == name);
    let world = match (!needs.allowed_outbound_hosts.is_empty(), imports_state) {
        (true, true) => "stateful-http-handler",
        (true, false) => "http-handler",
        (false, true) => "stateful-handler",
        _ if exports("handlePacked") => "packed-batch-handler",
        _ if exports("handleBatch") => "batch-handler",
        _ => "handler",
    };
    Ok(world.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_world_follows_the_capabilities_then_the_exports() {
        let bundle = |exports: &[&str], imports: &[&str]| Bundle {
            exports: exports.iter().map(|s| s.to_string()).collect(),
            imports: imports.iter().map(|s| s.to_string()).collect(),
        };
        let needs = |state: bool, http: bool| Needs {
            state: if state { vec!["o:".into()] } else { vec![] },
            allowed_outbound_hosts: if http {
                vec!["https://a".into()]
            } else {
                vec![]
            },
            ..Needs::default()
        };
        let w = |n: &Needs, b: &Bundle| world(n, b).expect("accepted");
        let packed = bundle(&["handle", "handlePacked"], &[]);
        assert_eq!(w(&needs(false, false), &packed), "packed-batch-handler");
        assert_eq!(
            w(
                &needs(false, false),
                &bundle(&["handle", "handleBatch"], &[])
            ),
            "batch-handler"
        );
        assert_eq!(
            w(&needs(false, false), &bundle(&["handle"], &[])),
            "handler"
        );
        // Declared state the bundle never imports is not built in.
        assert_eq!(w(&needs(true, false), &packed), "packed-batch-handler");
        let stateful_packed = bundle(&["handle"], &["sluice:plugin/state@0.1.4"]);
        assert_eq!(w(&needs(true, false), &stateful_packed), "stateful-handler");
        assert_eq!(w(&needs(false, true), &packed), "http-handler");
        // A forced world that contradicts the bundle is refused before the build.
        let forced = |world: &str, state: bool| Needs {
            world: Some(world.to_owned()),
            ..needs(state, false)
        };
        let err = world(&forced("handler", true), &stateful_packed).expect_err("refused");
        assert!(err.to_string().contains("imports ./state.js"), "{err}");
        let err = world(&forced("stateful-handler", true), &packed).expect_err("refused");
        assert!(err.to_string().contains("never imports"), "{err}");
        let stateful = bundle(&["handle"], &["sluice:plugin/state@0.1.4"]);
        let err = world(&needs(false, false), &stateful)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("state = ["), "{err}");
    }
}
