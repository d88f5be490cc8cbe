//! `sluice send` (add an entry to a pipeline's input, in the partition of its key) and
//! `sluice partition` (which partition a key goes to).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::Setup;

/// `sluice send`.
#[derive(clap::Args)]
pub struct SendArgs {
    /// The pipeline whose input gets the entry.
    pub pipeline: String,
    /// The entry's fields, in order.
    #[arg(value_name = "NAME=VALUE", required = true)]
    pub fields: Vec<String>,
    /// The key that picks the partition of a partitioned pipeline (see `sluice
    /// partition`): entries with the same key go to the same partition, in order.
    #[arg(long)]
    pub key: Option<String>,
    #[command(flatten)]
    pub setup: Setup,
}

/// `sluice partition`.
#[derive(clap::Args)]
pub struct PartitionArgs {
    /// The keys.
    #[arg(required = true)]
    pub keys: Vec<String>,
    /// How many partitions.
    #[arg(long, short = 'n')]
    pub partitions: u32,
}

impl SendArgs {
    /// Adds the entry with `XADD`; prints the stream and the entry's ID.
    pub async fn run(self) -> Result<ExitCode> {
        let path = &self.setup.config;
        let config = super::tool_config(path, self.setup.redis.clone())?;
        // Everything that can be checked is checked before connecting.
        let pipeline = super::find_pipeline(&config, path, &self.pipeline)?;
        let stream = match (pipeline.partitions, &self.key) {
            (Some(n), Some(key)) => crate::partition::tagged(
                pipeline.input.as_str(),
                crate::partition::of(key.as_bytes(), n),
            ),
            (Some(n), None) => bail!(
                "pipeline {:?} has {n} partitions: give --key, the key whose entries must stay in order (a user ID, an order ID), to pick one",
                self.pipeline
            ),
            (None, Some(_)) => bail!(
                "pipeline {:?} is not partitioned, so --key picks nothing: leave it out (or set partitions = N on the pipeline)",
                self.pipeline
            ),
            (None, None) => pipeline.input.to_string(),
        };
        let mut fields = Vec::new();
        for field in &self.fields {
            let (name, value) = field
                .split_once('=')
                .with_context(|| format!("field {field:?} is not NAME=VALUE"))?;
            fields.push((name.to_owned(), value.to_owned()));
        }
        let broker = super::connect_to(&config, path, "sluice send").await?;
        let id: String = broker
            .call("XADD", |mut c| {
                let mut cmd = redis::cmd("XADD");
                cmd.arg(&stream).arg("*");
                for (name, value) in &fields {
                    cmd.arg(name).arg(value);
                }
                async move { cmd.query_async(&mut c).await }
            })
            .await?;
        println!("{stream} {id}");
        Ok(ExitCode::SUCCESS)
    }
}

impl PartitionArgs {
    /// Prints each key's partition, one per line (`KEY PARTITION`).
    pub fn run(self) -> Result<ExitCode> {
        let max = crate::partition::MAX_PARTITIONS;
        if self.partitions == 0 || self.partitions > max {
            bail!("--partitions must be from 1 to {max}");
        }
        for key in &self.keys {
            println!(
                "{key} {}",
                crate::partition::of(key.as_bytes(), self.partitions)
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}
