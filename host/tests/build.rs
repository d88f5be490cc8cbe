//! Plugin projects as their authors use them: `sluice new` in every language, `sluice
//! build` from the manifest, `sluice test` on the fixtures, npm and PyPI dependencies.

use std::path::Path;
use std::process::{Command, Output};

use sluice_testkit::*;

/// Runs `sluice build PROJECT` with Rust and the C tool built in `target_dir` of the
/// workspace.
fn sluice_build(project: &Path, target_dir: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("build")
        .arg(project)
        .env("CARGO_TARGET_DIR", workspace().join(target_dir))
        .output()
        .expect("run sluice build")
}

/// `sluice new NAME --lang LANG [--http]` in a temporary directory, then `sluice build`
/// (Rust and the C tool built in `target_dir`); both must succeed. Returns the directory,
/// the project, and what each command printed.
fn new_and_build(
    name: &str,
    lang: &str,
    http: bool,
    target_dir: &str,
) -> (tempfile::TempDir, std::path::PathBuf, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = dir.path().join(name);
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["new", name, "--lang", lang, "--dir"])
        .arg(&project)
        .arg("--sdk")
        .arg(workspace())
        .args(http.then_some("--http"))
        .output()
        .expect("run sluice new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let build = sluice_build(&project, target_dir);
    assert!(
        build.status.success(),
        "{lang} build failed:\n{}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    let made = String::from_utf8_lossy(&out.stdout).into_owned();
    let said = String::from_utf8_lossy(&build.stdout).into_owned();
    (dir, project, made, said)
}

/// `sluice new NAME --lang L` makes a project that builds with its one command and whose
/// component passes `sluice invoke` as it is: fields copied to the configured target plus
/// `handledBy`, and a reject for a message without fields.
fn scaffold_builds_and_invokes(lang: &str, target_dir: &str) {
    let name = format!("hello-{lang}");
    let (_dir, project, made, said) = new_and_build(&name, lang, false, target_dir);
    assert!(made.contains("sluice build"), "{made}");
    assert!(said.contains("needs no grant"), "{said}");
    let wasm = project.join(format!("hello_{lang}.wasm"));
    let wasm = wasm.to_str().expect("utf-8 path");

    let (code, out, err) = invoke(&[wasm, "--config", "target=GREETINGS", "greeting=hello"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("→ GREETINGS\n"), "{out}");
    assert!(out.contains("  greeting = hello"), "{out}");
    assert!(out.contains(&format!("  handledBy = {name}")), "{out}");
    // A component with an interpreter inside takes seconds to compile (here, with an
    // empty cache): that is said, not silent; a compiled language's takes milliseconds.
    let interpreted = matches!(lang, "js" | "python");
    assert_eq!(
        err.contains("compiling the component"),
        interpreted,
        "{lang}: {err}"
    );

    let (code, out, err) = invoke(&[wasm, "--id", "7-0"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("message 7-0 has no fields"), "{out}");

    fixtures_pass_and_a_wrong_one_fails(wasm, &project);

    // A second project in the same place is refused, and says why.
    let again = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["new", &name, "--lang", lang, "--dir"])
        .arg(&project)
        .output()
        .expect("run sluice new");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists and is not empty"));
}

/// `sluice test` on a scaffold: its own fixture passes; a case that expects something
/// else fails with a diff, exit status 1 and a JUnit report that says so.
fn fixtures_pass_and_a_wrong_one_fails(wasm: &str, project: &Path) {
    let sluice = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .output()
            .expect("run sluice test");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    };
    let (code, out) = sluice(&["test", wasm]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 failed"), "{out}");
    let wrong = project.join("wrong.toml");
    let text = std::fs::read_to_string(project.join("fixtures.toml")).expect("fixtures");
    std::fs::write(
        &wrong,
        text.replace(
            "[\"greeting\", \"hello\"], [\"handledBy\"",
            "[\"greeting\", \"bye\"], [\"handledBy\"",
        ),
    )
    .expect("wrong");
    let junit = project.join("report.xml");
    let (code, out) = sluice(&[
        "test",
        wasm,
        "--fixtures",
        wrong.to_str().expect("utf-8"),
        "--junit",
        junit.to_str().expect("utf-8"),
    ]);
    if text.contains("[[case.expect.outputs]]") {
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("FAIL  copies every field")
                && out.contains("-   greeting = bye")
                && out.contains("+   greeting = hello"),
            "{out}"
        );
        let report = std::fs::read_to_string(&junit).expect("junit");
        assert!(
            report.contains("failures=\"1\"") && report.contains("<failure"),
            "{report}"
        );
    }
}

#[test]
fn new_rust_plugin_builds_and_passes_invoke() {
    scaffold_builds_and_invokes("rust", "target/plugins/scaffold");
}

#[test]
fn new_js_plugin_builds_and_passes_invoke() {
    scaffold_builds_and_invokes("js", "target/plugins/scaffold");
}

#[test]
fn new_python_plugin_builds_and_passes_invoke() {
    scaffold_builds_and_invokes("python", "target/plugins/scaffold");
}

#[test]
fn new_c_plugin_builds_and_passes_invoke() {
    // The sluice-c tool is the one build-plugins.sh already built.
    plugin_wasm("payments-c");
    scaffold_builds_and_invokes("c", "target/plugins");
}

/// `sluice new NAME --lang L --http` makes a handler that POSTs each entry to a service:
/// it builds with its one command, is refused by `sluice invoke` without a grant (the
/// message says how to grant), and with `--allow-outbound` reaches a real server with
/// the entry's fields as JSON and its idempotency key.
fn http_scaffold_calls_out(lang: &str, target_dir: &str) {
    let name = format!("caller-{lang}");
    let (_dir, project, made, said) = new_and_build(&name, lang, true, target_dir);
    assert!(made.contains("allowed_outbound_hosts"), "{made}");
    assert!(
        said.contains(
            "grant it in its [[pipeline]]:\nallowed_outbound_hosts = [\"http://127.0.0.1:8080\"]"
        ),
        "{said}"
    );
    let wasm = project.join(format!("caller_{lang}.wasm"));
    let wasm = wasm.to_str().expect("utf-8 path");
    let server = HttpServer::start();
    let url = format!("url={}", server.url("/echo"));
    let (code, _, err) = invoke(&[wasm, "--config", &url, "greeting=hello"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--allow-outbound"), "{err}");
    let origin = server.origin();
    let args = [
        wasm,
        "--allow-outbound",
        &origin,
        "--config",
        &url,
        "--id",
        "5-0",
        "greeting=hello",
    ];
    let (code, out, err) = invoke(&args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("  status = 200"), "{out}");
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).expect("JSON");
    assert_eq!(body["greeting"], "hello");
    assert_eq!(seen[0].header("idempotency-key").map(str::len), Some(32));
    // The service failing: 503 is retried, 400 dead-letters.
    for (status, exit, kind) in [(503, 2, "retry"), (400, 2, "reject")] {
        let url = format!("url={}", server.url(&format!("/status/{status}")));
        let (code, out, err) =
            invoke(&[wasm, "--allow-outbound", &origin, "--config", &url, "a=b"]);
        assert_eq!(code, exit, "{out}{err}");
        assert!(out.contains(kind), "{status}: {out}");
    }
}

#[test]
fn new_rust_http_plugin_calls_a_granted_service() {
    http_scaffold_calls_out("rust", "target/plugins/scaffold");
}

#[test]
fn new_js_http_plugin_calls_a_granted_service() {
    http_scaffold_calls_out("js", "target/plugins/scaffold");
}

#[test]
fn new_python_http_plugin_calls_a_granted_service() {
    http_scaffold_calls_out("python", "target/plugins/scaffold");
}

#[test]
fn new_c_http_plugin_calls_a_granted_service() {
    plugin_wasm("payments-c");
    http_scaffold_calls_out("c", "target/plugins");
}

/// A Python project's PyPI dependencies: a pure-Python one is installed into the build
/// and bundled (the handler imports it), one with native code is refused, named.
#[test]
fn python_dependencies_from_pypi_are_bundled_and_native_ones_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = dir.path().join("deps");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["new", "deps", "--lang", "python", "--dir"])
        .arg(&project)
        .arg("--sdk")
        .arg(workspace())
        .output()
        .expect("run sluice new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app = project.join("app.py");
    let source = std::fs::read_to_string(&app).expect("app.py");
    let source = source
        .replace("import sluice\n", "import six\n\nimport sluice\n")
        .replace(
            "fields[\"handledBy\"]",
            "fields[\"six\"] = str(six.PY3)\n        fields[\"handledBy\"]",
        );
    std::fs::write(&app, source).expect("app.py");
    let build = |requirements: &str| {
        std::fs::write(project.join("requirements.txt"), requirements).expect("requirements");
        sluice_build(&project, "target/plugins/scaffold")
    };
    let built = build("six==1.16.0\n");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let wasm = project.join("deps.wasm");
    let (code, out, err) = invoke(&[wasm.to_str().expect("utf-8"), "greeting=hello"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("  six = True"), "{out}");
    let fixtures = project.join("fixtures.toml");
    let cases = std::fs::read_to_string(&fixtures).expect("fixtures");
    std::fs::write(
        &fixtures,
        cases.replace(
            "[\"greeting\", \"hello\"], [\"handledBy\"",
            "[\"greeting\", \"hello\"], [\"six\", \"True\"], [\"handledBy\"",
        ),
    )
    .expect("fixtures");
    let tested = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("test")
        .arg(&wasm)
        .output()
        .expect("sluice test");
    let said = String::from_utf8_lossy(&tested.stdout);
    assert!(
        tested.status.success() && said.contains("2 passed"),
        "{said}"
    );
    let refused = build("six==1.16.0\nmarkupsafe==2.1.5\n");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("native code") && stderr.contains("markupsafe"),
        "{stderr}"
    );
}

/// `sluice new --lang ts`: a TypeScript project whose handler imports an npm package
/// (installed with npm into the project) builds — bundled by esbuild, then componentized —
/// runs, and passes its fixtures; a thrown error's stack in the log names the lines of
/// the TypeScript source (the source map `sluice build` puts in the component).
#[test]
fn a_typescript_handler_with_an_npm_dependency_builds_and_passes_its_fixtures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = dir.path().join("orders-check");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["new", "orders-check", "--lang", "ts", "--dir"])
        .arg(&project)
        .arg("--sdk")
        .arg(workspace())
        .output()
        .expect("run sluice new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "orders-check.ts",
        "package.json",
        "tsconfig.json",
        "sluice.d.ts",
        "fixtures.toml",
    ] {
        assert!(project.join(file).is_file(), "{file}");
    }
    let npm = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--silent",
            "zod@3.23.8",
        ])
        .current_dir(&project)
        .output()
        .expect("npm");
    assert!(
        npm.status.success(),
        "{}",
        String::from_utf8_lossy(&npm.stderr)
    );
    let source = project.join("orders-check.ts");
    let text = std::fs::read_to_string(&source).expect("source");
    let text = text
        .replace(
            "import { config,",
            "import { z } from \"zod\";\nconst Greeting = z.object({ greeting: z.string().min(1) });\nimport { config,",
        )
        .replace(
            "  log.debug(",
            "  if (msg.text(\"boom\")) broken(msg.id);\n  const checked = Greeting.safeParse(msg.fields());\n  if (!checked.success) throw reject(`not a greeting: ${checked.error.issues[0].message}`);\n  log.debug(",
        );
    // A bug: the stack in the log must point at this line of the TypeScript source.
    let text = text
        + "\nfunction broken(id: string): string {\n  const missing: any = undefined;\n  return missing.field + id;\n}\n";
    let broken_line = text
        .lines()
        .position(|l| l.contains("return missing.field"))
        .expect("the bug")
        + 1;
    std::fs::write(&source, text).expect("source");
    let build = sluice_build(&project, "target/plugins/scaffold");
    assert!(
        build.status.success(),
        "{}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    let wasm = project.join("orders_check.wasm");
    let wasm = wasm.to_str().expect("utf-8");
    let (code, out, err) = invoke(&[wasm, "greeting=hello"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("  handledBy = orders-check"), "{out}");
    let (code, out, _) = invoke(&[wasm, "other=x"]);
    assert_eq!(code, 2);
    assert!(out.contains("not a greeting"), "zod's check ran: {out}");
    let (code, _, err) = invoke(&[wasm, "greeting=hi", "boom=1"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("broken@orders-check.ts:{broken_line}:"))
            && !err.contains("@bundle.js:"),
        "the stack names the TypeScript source's lines: {err}"
    );
    let tested = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["test", wasm])
        .output()
        .expect("sluice test");
    let text = String::from_utf8_lossy(&tested.stdout);
    assert!(tested.status.success(), "{text}");
}

/// Runs `sluice ARGS`; returns (success, stdout and stderr).
fn sluice(args: &[&str], project: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .arg(project)
        .output()
        .expect("run sluice");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// A new project of `lang` in a temporary directory.
fn new_project(lang: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = dir.path().join("held");
    let (ok, said) = sluice(
        &[
            "new",
            "held",
            "--lang",
            lang,
            "--sdk",
            workspace().to_str().expect("utf-8"),
            "--dir",
        ],
        &project,
    );
    assert!(ok, "{said}");
    (dir, project)
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read");
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).expect("write");
}

/// The manifest, not the source, says what a JavaScript component may use: one that
/// imports handler state without declaring state prefixes is refused before it is built,
/// naming the line to add; declared, it builds for world stateful-handler and the grant
/// is printed. Unchanged inputs are not built again (a changed comment is not a change of
/// the bundle); changed code is.
#[test]
fn a_javascript_component_is_built_for_what_its_manifest_declares() {
    let (_dir, project) = new_project("js");
    let source = project.join("held.js");
    edit(
        &source,
        "import { config,",
        "import { state } from \"./state.js\";\nimport { config,",
    );
    edit(
        &source,
        "  log.debug(",
        "  state.incr(\"seen:all\", 1n);\n  log.debug(",
    );
    let (ok, said) = sluice(&["build"], &project);
    assert!(
        !ok && said.contains("declares no state prefixes") && said.contains("state = ["),
        "{said}"
    );
    assert!(!project.join("held.wasm").exists());
    edit(
        &project.join("plugin.toml"),
        "# state = [\"order:\"]",
        "state = [\"seen:\"]",
    );
    let (ok, said) = sluice(&["build"], &project);
    assert!(ok, "{said}");
    assert!(said.contains("world stateful-handler"), "{said}");
    assert!(
        said.contains("grant it in its [[pipeline]]:\nstate = [\"seen:\"]"),
        "{said}"
    );
    let (ok, said) = sluice(&["build"], &project);
    assert!(ok && said.starts_with("up to date:"), "{said}");
    // What counts is the bundle: a comment is not in it, code is.
    edit(&source, "// Copies", "// Still copies");
    let (ok, said) = sluice(&["build"], &project);
    assert!(ok && said.starts_with("up to date:"), "{said}");
    edit(&source, "handledBy: \"held\"", "handled_by: \"held\"");
    let (ok, said) = sluice(&["build"], &project);
    assert!(ok && said.starts_with("built "), "{said}");
    // A comment moves the lines the stacks name: the source map is an input too.
    edit(&source, "// Still copies", "//\n// Still copies");
    let (ok, said) = sluice(&["build"], &project);
    assert!(ok && said.starts_with("built "), "{said}");
    // `sluice test` holds the handler to the manifest's prefixes, as a pipeline would.
    edit(&source, "\"seen:all\"", "\"other:all\"");
    let (ok, said) = sluice(&["build"], &project);
    assert!(ok, "{said}");
    // `sluice test PROJECT` runs the component its manifest names.
    let (ok, said) = sluice(&["test"], &project);
    assert!(!ok && said.contains("other:all"), "{said}");
    // So does `sluice invoke` without --state-prefix, as the daemon would.
    let wasm = project.join("held.wasm");
    let (code, out, err) = invoke(&[wasm.to_str().expect("utf-8"), "greeting=hi"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("other:all"), "{out}");
    // A failure kind that does not exist is refused when the file is read.
    let fixtures = project.join("fixtures.toml");
    edit(&fixtures, "failure = \"reject\"", "failure = \"rejected\"");
    let (ok, said) = sluice(&["test"], &project);
    assert!(
        !ok && said.contains("\"rejected\" is not one of retry, reject"),
        "{said}"
    );
}

/// A compiled language's component imports what its code calls: a C handler that starts
/// using handler state without declaring it fails the check after the build, and the
/// component from before stays in place (a daemon watching it never sees the refused
/// one). A declared capability the code does not use is named.
#[test]
fn a_compiled_component_is_checked_against_its_manifest_after_the_build() {
    plugin_wasm("payments-c");
    let (_dir, project) = new_project("c");
    let wasm = project.join("held.wasm");
    let built = |project: &Path| {
        let out = sluice_build(project, "target/plugins");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, said) = built(&project);
    assert!(ok, "{said}");
    let before = std::fs::read(&wasm).expect("built");
    edit(
        &project.join("held.c"),
        "    sluice_set(o, \"handledBy\"",
        "    if (!sluice_state_add(err, \"seen:all\", 1)) return false;\n    sluice_set(o, \"handledBy\"",
    );
    let (ok, said) = built(&project);
    assert!(!ok, "{said}");
    assert!(
        said.contains("imports sluice:plugin/state") && said.contains("state = ["),
        "{said}"
    );
    assert_eq!(
        std::fs::read(&wasm).expect("kept"),
        before,
        "the refused build replaced the component"
    );
    let manifest = project.join("plugin.toml");
    edit(&manifest, "# state = [\"order:\"]", "state = [\"seen:\"]");
    edit(
        &manifest,
        "# allowed_outbound_hosts",
        "allowed_outbound_hosts",
    );
    let (ok, said) = built(&project);
    assert!(ok, "{said}");
    assert!(said.contains("state = [\"seen:\"]"), "{said}");
    assert!(
        said.contains("declares `allowed_outbound_hosts` but the component does not use it"),
        "{said}"
    );
    assert!(
        !said.contains("allowed_outbound_hosts = ["),
        "only what it uses is granted: {said}"
    );
}

/// Bad projects are refused with what to do: no manifest, an unknown language, a missing
/// entry module, a variant the manifest does not have.
#[test]
fn bad_projects_are_refused_naming_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, said) = sluice(&["build"], dir.path());
    assert!(
        !ok && said.contains("plugin.toml") && said.contains("sluice new"),
        "{said}"
    );
    let (_dir, project) = new_project("js");
    let manifest = project.join("plugin.toml");
    let (ok, said) = sluice(&["build", "--variant", "fast"], &project);
    assert!(!ok && said.contains("[variants.fast]"), "{said}");
    // --out never overwrites a file that is not a component (a source, the manifest).
    let source = project.join("held.js");
    let before = std::fs::read(&source).expect("source");
    let out = source.to_str().expect("utf-8");
    let (ok, said) = sluice(&["build", "--out", out], &project);
    assert!(
        !ok && said.contains("not a WebAssembly component"),
        "{said}"
    );
    assert_eq!(std::fs::read(&source).expect("source"), before);
    edit(&manifest, "entry = \"held.js\"", "entry = \"main.js\"");
    let (ok, said) = sluice(&["build"], &project);
    assert!(
        !ok && said.contains("main.js") && said.contains("entry"),
        "{said}"
    );
    edit(&manifest, "language = \"js\"", "language = \"go\"");
    let (ok, said) = sluice(&["build"], &project);
    assert!(
        !ok && said.contains("plugin.toml") && said.contains("go"),
        "{said}"
    );
}
