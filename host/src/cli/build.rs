//! `sluice build`.

use std::process::ExitCode;

use anyhow::Result;

use super::BuildArgs;

impl BuildArgs {
    /// Builds and checks the component; prints what its pipeline must grant.
    pub fn run(self) -> Result<ExitCode> {
        let request = crate::build::Request {
            dir: self.dir,
            variant: self.variant,
            out: self.out,
            sdk: self.sdk,
            force: self.force,
            profile: self.profile,
        };
        let built = crate::build::build(&request)?;
        if self.quiet {
            return Ok(ExitCode::SUCCESS);
        }
        let size = std::fs::metadata(&built.out).map(|m| m.len()).unwrap_or(0);
        let world = match &built.world {
            Some(world) => format!("world {world}"),
            None => "world from its exports".to_owned(),
        };
        println!(
            "{} {} ({}, {world}, {}; exports {})",
            if built.rebuilt {
                "built"
            } else {
                "up to date:"
            },
            built.out.display(),
            built.language.title(),
            bytesize::ByteSize(size).display().si(),
            built.shape.exports.join(", "),
        );
        for unused in &built.unused {
            println!(
                "note: plugin.toml declares `{unused}` but the component does not use it: no pipeline needs to grant it"
            );
        }
        let lines = built.grant_lines();
        if lines.is_empty() {
            println!("its [[pipeline]] needs no grant");
        } else {
            println!("grant it in its [[pipeline]]:");
            for line in lines {
                println!("{line}");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
