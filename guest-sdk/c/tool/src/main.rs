//! `sluice-c`: the two steps of building a C handler that are not the C compiler's.
//!
//! ```text
//! sluice-c bindings --wit wit --out build/     # handler.h, handler.c, handler_component_type.o
//! clang-19 --target=wasm32-wasip1 -mexec-model=reactor -O2 ... -o build/core.wasm
//! sluice-c component build/core.wasm -o payments.wasm
//! ```
//!
//! The same jobs as `wit-bindgen c` and `wasm-tools component new --adapt`, from the same
//! libraries, pinned to the versions the host and the Rust SDK use, so a C plugin needs
//! no extra `cargo install`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use wit_bindgen_core::Files;
use wit_bindgen_core::wit_parser::Resolve;
use wit_component::ComponentEncoder;

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the C bindings of a world: `<world>.h`, `<world>.c` and
    /// `<world>_component_type.o` (link the object: it carries the component type).
    Bindings {
        /// The WIT package directory.
        #[arg(long, default_value = "wit")]
        wit: PathBuf,
        /// The world to generate.
        #[arg(long, default_value = "handler")]
        world: String,
        /// Name the generated files and types after this instead of the world (the C SDK
        /// is written against `handler`, which `stateful-handler` includes).
        #[arg(long = "as", value_name = "NAME")]
        rename: Option<String>,
        /// Where to write the files (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Turns a core module built by clang for wasm32-wasip1 (reactor) into a component,
    /// adapting its WASI preview1 imports to WASI 0.2.
    Component {
        /// The core module.
        module: PathBuf,
        /// The component to write.
        #[arg(short, long)]
        output: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Bindings {
            wit,
            world,
            rename,
            out,
        } => bindings(&wit, &world, rename, &out),
        Command::Component { module, output } => component(&module, &output),
    }
}

fn bindings(wit: &Path, world: &str, rename: Option<String>, out: &Path) -> Result<()> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_path(wit)
        .with_context(|| format!("cannot read the WIT package in {}", wit.display()))?;
    let world = resolve
        .select_world(&[package], Some(world))
        .with_context(|| format!("no world {world:?} in {}", wit.display()))?;
    let mut files = Files::default();
    let opts = wit_bindgen_c::Opts {
        rename_world: rename,
        ..Default::default()
    };
    opts.build()
        .generate(&mut resolve, world, &mut files)
        .context("generating the C bindings")?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for (name, contents) in files.iter() {
        let path = out.join(name);
        // Unchanged files keep their modification time, so `make` does not rebuild.
        if std::fs::read(&path).is_ok_and(|old| old == contents) {
            continue;
        }
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn component(module: &Path, output: &Path) -> Result<()> {
    let bytes =
        std::fs::read(module).with_context(|| format!("cannot read {}", module.display()))?;
    if !bytes.starts_with(b"\0asm\x01\0\0\0") {
        bail!(
            "{} is not a core WebAssembly module (build it with clang --target=wasm32-wasip1 -mexec-model=reactor)",
            module.display()
        );
    }
    let component = ComponentEncoder::default()
        .validate(true)
        .module(&bytes)
        .with_context(|| {
            format!(
                "{} carries no component type: link the bindings' handler_component_type.o",
                module.display()
            )
        })?
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .context("loading the WASI preview1 adapter")?
        .encode()
        .with_context(|| format!("cannot make a component of {}", module.display()))?;
    std::fs::write(output, component)
        .with_context(|| format!("cannot write {}", output.display()))?;
    Ok(())
}
