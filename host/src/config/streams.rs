//! Where a pipeline's streams and keys are: its dead-letter stream, its partitions (each
//! a pipeline of its own over streams tagged `{p}`) and where its state prefixes live.

use super::{Name, PipelineConfig};

impl PipelineConfig {
    /// The stream that receives this pipeline's dead letters.
    pub fn dead_letter_stream(&self) -> String {
        match &self.dead_letter {
            Some(name) => name.to_string(),
            None => format!("{}:dead", self.input),
        }
    }

    /// The partition numbers this pipeline runs: `0..partitions`, or just `[None]`.
    pub fn partition_numbers(&self) -> Vec<Option<u32>> {
        match self.partitions {
            Some(n) => (0..n).map(Some).collect(),
            None => vec![None],
        }
    }

    /// Partition `p` of this pipeline as a pipeline of its own: its streams tagged
    /// `{p}` (see [`crate::partition`]). State prefixes stay as the handler sees them;
    /// [`PipelineConfig::state_keys`] says where they live.
    pub fn partition(&self, p: u32) -> PipelineConfig {
        let tag = |name: &str| Name(crate::partition::tagged(name, p));
        PipelineConfig {
            input: tag(self.input.as_str()),
            outputs: self.outputs.iter().map(|o| tag(o.as_str())).collect(),
            dead_letter: Some(tag(&self.dead_letter_stream())),
            partitions: None,
            // Partitions run side by side (`concurrency` of them at once), each handling
            // its batch on one instance.
            concurrency: Some(1),
            ..self.clone()
        }
    }

    /// The pipelines that run for this one: each partition (`partitions = N`), or the
    /// pipeline itself.
    pub fn parts(&self) -> Vec<PipelineConfig> {
        match self.partitions {
            Some(n) => (0..n).map(|p| self.partition(p)).collect(),
            None => vec![self.clone()],
        }
    }

    /// Every stream this pipeline dead-letters to, in partition order: `dead_letter`
    /// (default `INPUT:dead`), or one per partition (`INPUT:dead:{0}` ..).
    pub fn dead_letter_streams(&self) -> Vec<String> {
        self.parts()
            .iter()
            .map(PipelineConfig::dead_letter_stream)
            .collect()
    }

    /// Where each state prefix lives in Redis in partition `p`: (prefix, Redis prefix).
    pub fn state_keys(&self, p: Option<u32>) -> Vec<(String, String)> {
        self.state
            .iter()
            .map(|prefix| {
                let stored = match p {
                    Some(p) => crate::partition::state_prefix(prefix, p),
                    None => prefix.clone(),
                };
                (prefix.clone(), stored)
            })
            .collect()
    }
}
