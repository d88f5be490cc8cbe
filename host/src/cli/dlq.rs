//! `sluice dlq`: list, replay and purge a pipeline's dead letters, in the dead-letter
//! stream of each of its partitions. IDs are checked before Redis is asked anything;
//! every ID given is reported (replayed, kept, purged or not found), and the exit status
//! is 1 when IDs were given and none of them is a dead letter of the pipeline.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};

use super::Setup;
use crate::broker::{Broker, LetterIds, ReplayCut, Replayed};
use crate::config::{Config, PipelineConfig};
use crate::message::dead_letter_fields;

/// `sluice dlq`.
#[derive(clap::Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub action: DlqAction,
    #[command(flatten)]
    pub setup: Setup,
}

/// What `sluice dlq` does.
#[derive(clap::Subcommand)]
pub enum DlqAction {
    /// Print dead letters, oldest first.
    List {
        /// The pipeline.
        pipeline: String,
        /// How many at most (1 to 100,000), across every partition's stream.
        #[arg(long, default_value_t = 50, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
        count: usize,
    },
    /// Send dead letters back to the input with their original fields: the IDs given,
    /// or every letter there when the command starts. Exit status 1 when IDs were given
    /// and none was found.
    Replay {
        /// The pipeline.
        pipeline: String,
        /// Replay only this dead letter: MS-SEQ, or MS meaning MS-0; repeat for more
        /// (at most 10,000).
        #[arg(long = "id", value_name = "ID")]
        ids: Vec<String>,
    },
    /// Delete dead letters: the IDs given, or every letter of the pipeline (which asks
    /// first, or needs --yes when stdin is not a terminal). Exit status 1 when IDs were
    /// given and none was found, or when the purge of every letter is not confirmed.
    Purge {
        /// The pipeline.
        pipeline: String,
        /// Delete only this dead letter (as for replay); repeat for more.
        #[arg(long = "id", value_name = "ID")]
        ids: Vec<String>,
        /// Purge every letter without asking.
        #[arg(long, short = 'y', conflicts_with = "ids")]
        yes: bool,
    },
}

impl DlqArgs {
    /// Lists, replays or purges dead letters.
    pub async fn run(self) -> Result<ExitCode> {
        dlq(self.action, &self.setup.config, self.setup.redis).await
    }
}

/// One pipeline's dead letters: its partitions (or itself), each with its own stream.
struct Letters {
    pipeline: String,
    parts: Vec<PipelineConfig>,
    broker: Broker,
}

async fn dlq(action: DlqAction, path: &Path, redis: Option<String>) -> Result<ExitCode> {
    let (pipeline, ids) = match &action {
        DlqAction::List { pipeline, .. } => (pipeline, LetterIds::default()),
        DlqAction::Replay { pipeline, ids } | DlqAction::Purge { pipeline, ids, .. } => {
            (pipeline, LetterIds::parse(ids)?)
        }
    };
    let config = super::tool_config(path, redis)?;
    // The pipeline is checked before connecting.
    let parts = partitions(&config, pipeline, path)?;
    let broker = super::connect_to(&config, path, "sluice dlq").await?;
    let letters = Letters {
        pipeline: pipeline.clone(),
        parts,
        broker,
    };
    match action {
        DlqAction::List { count, .. } => letters.list(count).await,
        DlqAction::Replay { .. } if ids.is_empty() => letters.replay_all().await,
        DlqAction::Replay { .. } => letters.replay_ids(&ids).await,
        DlqAction::Purge { yes, .. } if ids.is_empty() => letters.purge_all(yes).await,
        DlqAction::Purge { .. } => letters.purge_ids(&ids).await,
    }
}

/// The pipeline `name` of `config`, once per partition: a partitioned pipeline's dead
/// letters are in one stream per partition.
fn partitions(config: &Config, name: &str, path: &Path) -> Result<Vec<PipelineConfig>> {
    Ok(super::find_pipeline(config, path, name)?.parts())
}

impl Letters {
    async fn list(&self, count: usize) -> Result<ExitCode> {
        let mut left = count;
        for p in &self.parts {
            let dead = p.dead_letter_stream();
            if left == 0 {
                break;
            }
            for (id, fields) in self.broker.dead_letters(&dead, None, left).await? {
                left = left.saturating_sub(1);
                println!("{id} ({dead})");
                for (name, value) in fields {
                    println!("  {name} = {}", String::from_utf8_lossy(&value));
                }
            }
        }
        if left == count {
            let streams: Vec<String> = self.parts.iter().map(|p| p.dead_letter_stream()).collect();
            println!("no dead letters in {}", streams.join(", "));
        }
        Ok(ExitCode::SUCCESS)
    }

    async fn replay_all(&self) -> Result<ExitCode> {
        let mut done = Replayed::default();
        for p in &self.parts {
            let (dead, input) = (p.dead_letter_stream(), p.input.as_str());
            let step = self
                .broker
                .replay_all(&dead, input, dead_letter_fields::COUNT)
                .await
                .map_err(|e| ReplayCut::of(&dead, &done, e))?;
            for id in &step.kept {
                print_kept(id, &dead, input);
            }
            println!("replayed {} to {input}", letters(step.replayed));
            done.absorb(step);
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Looks for every ID in every partition's stream (an ID names an entry of one
    /// stream: two partitions can hold the same one); not found is not found in any.
    async fn replay_ids(&self, ids: &LetterIds) -> Result<ExitCode> {
        let mut missing: BTreeSet<String> = text(ids).collect();
        let mut done = Replayed::default();
        for p in &self.parts {
            let (dead, input) = (p.dead_letter_stream(), p.input.as_str());
            let step = self
                .broker
                .replay_ids(&dead, input, dead_letter_fields::COUNT, ids)
                .await
                .map_err(|e| ReplayCut::of(&dead, &done, e))?;
            let absent: BTreeSet<&str> = step.not_found.iter().map(String::as_str).collect();
            for id in text(ids).filter(|id| !absent.contains(id.as_str())) {
                if step.kept.contains(&id) {
                    print_kept(&id, &dead, input);
                } else {
                    println!("replayed {id} ({dead} to {input})");
                }
                missing.remove(&id);
            }
            println!("replayed {} to {input}", letters(step.replayed));
            done.absorb(step);
        }
        Ok(self.not_found(ids, &missing))
    }

    /// Purges the letters there when it counted them (and asked): later ones stay.
    async fn purge_all(&self, yes: bool) -> Result<ExitCode> {
        let mut count = 0;
        let mut bounds = Vec::with_capacity(self.parts.len());
        for p in &self.parts {
            let dead = p.dead_letter_stream();
            let (n, last) = self.broker.dead_extent(&dead).await?;
            count += n;
            bounds.push((dead, last));
        }
        let what = format!("{} of pipeline {:?}", letters(count), self.pipeline);
        if count > 0 && !yes {
            if !std::io::stdin().is_terminal() {
                bail!("not purging {what} without --yes: stdin is not a terminal to ask on");
            }
            let question = format!("purge {what}? [y/N] ");
            let mut stdin = std::io::stdin().lock();
            if !answer_is_yes(&question, &mut stdin, &mut std::io::stderr())? {
                eprintln!("nothing purged");
                return Ok(ExitCode::FAILURE);
            }
        }
        for (dead, last) in bounds {
            let n = match last {
                Some(last) => self.broker.purge_dead(&dead, last).await?,
                None => 0,
            };
            println!("purged {} from {dead}", letters(n));
        }
        Ok(ExitCode::SUCCESS)
    }

    async fn purge_ids(&self, ids: &LetterIds) -> Result<ExitCode> {
        let mut missing: BTreeSet<String> = text(ids).collect();
        for p in &self.parts {
            let dead = p.dead_letter_stream();
            let done = self.broker.purge_ids(&dead, ids).await?;
            let absent: BTreeSet<&str> = done.not_found.iter().map(String::as_str).collect();
            for id in text(ids).filter(|id| !absent.contains(id.as_str())) {
                println!("purged {id} ({dead})");
                missing.remove(&id);
            }
            println!("purged {} from {dead}", letters(done.purged));
        }
        Ok(self.not_found(ids, &missing))
    }

    /// Prints the IDs found in no stream; failure when that is every ID given.
    fn not_found(&self, ids: &LetterIds, missing: &BTreeSet<String>) -> ExitCode {
        for id in missing {
            println!(
                "not found {id}: no dead letter of pipeline {:?} has this ID (a letter has an ID of its own; the entry's ID is its sluice.id: see `sluice dlq list {}`)",
                self.pipeline, self.pipeline
            );
        }
        if missing.len() < ids.len() {
            return ExitCode::SUCCESS;
        }
        eprintln!(
            "error: none of the {} IDs given is a dead letter of pipeline {:?}",
            ids.len(),
            self.pipeline
        );
        ExitCode::FAILURE
    }
}

fn print_kept(id: &str, dead: &str, input: &str) {
    println!(
        "kept {id} ({dead}): it holds no copy of its entry (too wide to copy); its sluice.error names the original in {input}"
    );
}

/// The IDs in canonical form, in stream order.
fn text(ids: &LetterIds) -> impl Iterator<Item = String> + '_ {
    ids.as_slice().iter().map(ToString::to_string)
}

/// "1 dead letter", "2 dead letters".
fn letters(n: usize) -> String {
    format!("{n} dead letter{}", if n == 1 { "" } else { "s" })
}

/// Writes `question` to `output` and reads a line from `input`: yes for `y` or `yes`
/// (any case), no for anything else or nothing.
fn answer_is_yes(
    question: &str,
    input: &mut impl BufRead,
    output: &mut impl Write,
) -> std::io::Result<bool> {
    output.write_all(question.as_bytes())?;
    output.flush()?;
    let mut line = String::new();
    input.read_line(&mut line)?;
    let answer = line.trim().to_ascii_lowercase();
    Ok(answer == "y" || answer == "yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yes_confirms() {
        let ask = |typed: &str| {
            let mut shown = Vec::new();
            let yes = answer_is_yes("purge? [y/N] ", &mut typed.as_bytes(), &mut shown)
                .expect("in memory");
            assert_eq!(shown, b"purge? [y/N] ");
            yes
        };
        for typed in ["y\n", "Y\n", "yes\n", " YES \n", "y"] {
            assert!(ask(typed), "{typed:?}");
        }
        for typed in ["", "\n", "n\n", "no\n", "yy\n", "sure\n"] {
            assert!(!ask(typed), "{typed:?}");
        }
    }

    #[test]
    fn counts_read_as_words() {
        assert_eq!(letters(0), "0 dead letters");
        assert_eq!(letters(1), "1 dead letter");
        assert_eq!(letters(2), "2 dead letters");
    }
}
