//! `sluice build`: builds a plugin project from its manifest ([`manifest::FILE`]) in any of
//! the languages (Rust, JavaScript, TypeScript, Python, C), checks the component's real
//! imports and exports against the manifest, and says what the pipeline that runs it must
//! grant.
//!
//! The manifest, not the source, decides what a JavaScript or Python component may use:
//! the world it is built for follows from the capabilities it declares (and, for
//! JavaScript, from what its bundled module exports). A Rust or C component imports and
//! exports what its code uses; the check after the build holds every language to its
//! manifest.

mod c;
mod check;
mod js;
pub mod manifest;
mod native;
mod python;
mod run;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use check::Shape;
use manifest::{Language, Manifest, Needs};

/// What to build.
#[derive(Debug, Clone)]
pub struct Request {
    /// The plugin project (the directory holding `plugin.toml`).
    pub dir: PathBuf,
    /// One of the manifest's `[variants.NAME]`.
    pub variant: Option<String>,
    /// Where to write the component; default: `NAME.wasm` in the project.
    pub out: Option<PathBuf>,
    /// The Sluice checkout (its `wit/` and `guest-sdk/`); default: the manifest's `sdk`,
    /// else the checkout holding the project, else the one this binary was built from.
    pub sdk: Option<PathBuf>,
    /// Build even when the inputs have not changed since the last build.
    pub force: bool,
    /// Rust: the cargo profile.
    pub profile: String,
}

/// A build in progress: the request resolved against the manifest.
struct Job<'a> {
    dir: PathBuf,
    manifest: &'a Manifest,
    needs: &'a Needs,
    out: PathBuf,
    /// Scratch files of this build (bundles, bindings, vendored packages, the stamp).
    staging: PathBuf,
    sdk: PathBuf,
    force: bool,
    profile: &'a str,
}

impl Job<'_> {
    /// Where a language's build writes the component before it is installed at `out`.
    fn component(&self) -> PathBuf {
        self.staging.join("component.wasm")
    }

    /// Where the fingerprint of the last build is recorded.
    fn record(&self) -> PathBuf {
        self.staging.join("stamp")
    }
}

/// What one language's build did.
struct Step {
    /// The world it was built for, when the language needs one chosen.
    world: Option<String>,
    /// The component just built, to install at `out`; None when `out` was already built
    /// from the same inputs.
    built: Option<PathBuf>,
    /// The fingerprint of the inputs, recorded once the component is installed.
    stamp: Option<run::Stamp>,
}

impl Step {
    fn up_to_date(world: Option<String>) -> Self {
        Step {
            world,
            built: None,
            stamp: None,
        }
    }
}

/// A built and checked component.
#[derive(Debug)]
pub struct Built {
    /// Where it is.
    pub out: PathBuf,
    /// The manifest's language.
    pub language: Language,
    /// The world it was built for (JavaScript, TypeScript, Python).
    pub world: Option<String>,
    /// False when it was up to date.
    pub rebuilt: bool,
    /// Its imports and exports.
    pub shape: Shape,
    /// What the manifest declares (with the variant's).
    pub needs: Needs,
    /// Declared capabilities the component does not use.
    pub unused: Vec<String>,
}

impl Built {
    /// The lines of a `[[pipeline]]` that grant what the component uses.
    pub fn grant_lines(&self) -> Vec<String> {
        check::grant_lines(&self.shape, &self.needs)
    }
}

/// Builds the project `request.dir` and checks the component.
pub fn build(request: &Request) -> Result<Built> {
    let dir = std::path::absolute(&request.dir)?;
    let manifest = Manifest::load(&dir)?;
    let needs = manifest.needs(request.variant.as_deref())?;
    let out = out_path(request.out.as_deref(), &dir, &manifest)?;
    let out_dir = out.parent().unwrap_or(Path::new("/")).to_owned();
    let stem = out.file_stem().unwrap_or_default().to_string_lossy();
    let staging = out_dir.join("build").join(stem.as_ref());
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    // One build of an output at a time: two would mix their scratch files.
    let lock = std::fs::File::create(staging.join("lock"))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", staging.display()))?;
    let sdk = sdk_of(request.sdk.as_deref(), &manifest, &dir)?;
    let job = Job {
        dir,
        manifest: &manifest,
        needs: &needs,
        out,
        staging,
        sdk,
        force: request.force,
        profile: &request.profile,
    };
    let step = match manifest.language {
        Language::Js | Language::Ts => js::build(&job)?,
        Language::Python => python::build(&job)?,
        Language::Rust => native::rust(&job)?,
        Language::C => c::build(&job)?,
    };
    finish(&job, step)
}

/// Checks the built component and installs it: the check comes first, so that a
/// component that does not match its manifest never replaces the one a daemon may be
/// running.
fn finish(job: &Job, step: Step) -> Result<Built> {
    let candidate = step.built.clone().unwrap_or_else(|| job.out.clone());
    let bytes = std::fs::read(&candidate)
        .with_context(|| format!("cannot read the built {}", candidate.display()))?;
    let shape = Shape::of(&bytes)?;
    let unused = check::against(&shape, job.needs).with_context(|| {
        format!(
            "the component built from {} does not match its {}",
            job.dir.display(),
            manifest::FILE
        )
    })?;
    // A component identical to the installed one is left in place (cargo rebuilds
    // nothing and says so only by the bytes): a watching daemon sees no change.
    let unchanged = std::fs::read(&job.out).is_ok_and(|installed| installed == bytes);
    let built = step.built.as_ref().filter(|_| !unchanged);
    if let Some(built) = built {
        run::install(built, &job.out)?;
    }
    if let Some(stamp) = &step.stamp {
        stamp.save(&job.out, &job.record())?;
    }
    Ok(Built {
        out: job.out.clone(),
        language: job.manifest.language,
        world: step.world,
        rebuilt: built.is_some(),
        shape,
        needs: job.needs.clone(),
        unused,
    })
}

/// Where the component goes: `given` (a directory: `NAME.wasm` in it), else `NAME.wasm` in
/// the project. An existing file that is not a component is never overwritten (a source
/// or the manifest named by mistake).
fn out_path(given: Option<&Path>, dir: &Path, manifest: &Manifest) -> Result<PathBuf> {
    let out = match given {
        Some(path) if path.is_dir() => path.join(manifest.file_name()),
        Some(path) => path.to_owned(),
        None => dir.join(manifest.file_name()),
    };
    let out = std::path::absolute(out)?;
    if out.is_file() {
        let mut head = [0u8; 4];
        let is_wasm = std::fs::File::open(&out)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .is_ok_and(|()| &head == b"\0asm");
        if !is_wasm {
            anyhow::bail!(
                "{} exists and is not a WebAssembly component: not overwriting it (give --out a .wasm path)",
                out.display()
            );
        }
    }
    Ok(out)
}

/// The Sluice checkout: `given` (--sdk), else the manifest's `sdk`, else the one holding
/// the project or the one this binary was built from.
fn sdk_of(given: Option<&Path>, manifest: &Manifest, dir: &Path) -> Result<PathBuf> {
    let sdk = match (given, &manifest.sdk) {
        (Some(sdk), _) => sdk.to_owned(),
        (None, Some(sdk)) => dir.join(sdk),
        (None, None) => find_root(dir).context(
            "cannot find a Sluice checkout (wit/ and guest-sdk/) above the project: pass --sdk PATH or set sdk in plugin.toml",
        )?,
    };
    if !is_root(&sdk) {
        anyhow::bail!(
            "{} is not a Sluice checkout (no wit/handler.wit and guest-sdk/): fix `sdk` in plugin.toml or pass --sdk PATH",
            sdk.display()
        );
    }
    Ok(std::path::absolute(&sdk)?)
}

/// Whether `path` is a Sluice checkout: it has `wit/handler.wit` and `guest-sdk/`.
fn is_root(path: &Path) -> bool {
    path.join("wit/handler.wit").is_file() && path.join("guest-sdk").is_dir()
}

/// The Sluice checkout holding `start` (or one of its parents), or the one this binary
/// was built from, if either exists.
pub fn find_root(start: &Path) -> Option<PathBuf> {
    if let Some(found) = start.ancestors().find(|p| is_root(p)) {
        return Some(found.to_owned());
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    is_root(built_from).then(|| built_from.to_owned())
}
