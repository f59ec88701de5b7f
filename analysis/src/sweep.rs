//! Sweeps across processes and machines: a scenario's cells times a list of
//! seeds, expanded into one fixed, ordered list of runs (cell-major). A
//! shard takes every `count`-th run from `index`, so shards are balanced
//! across cells and any batch engine that hands out indices (Kubernetes
//! Indexed Jobs, Slurm job arrays, a CI matrix) can run them. Each run
//! writes `cell-NN/seed-S/report.json` under the output directory and every
//! shard writes the same `sweep.json` (the plan), so re-running a shard
//! rewrites the same bytes, and a merge reads any set of directories that
//! together hold every run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::merge::{self, MergeError, Merged, Run};

/// What a sweep runs; written to `sweep.json` in every output directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub scenario: String,
    pub sha256: String,
    pub cells: usize,
    pub seeds: Vec<u64>,
}

/// One run of the plan.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Job {
    pub cell: usize,
    pub seed: u64,
}

/// Shard `index` of `count` (0-based).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("shard index {index} is not below the shard count {count}")]
    ShardRange { index: usize, count: usize },
    #[error("{0} is set but the shard count is not: pass --shard-count")]
    NoCount(&'static str),
    #[error("{name}={value:?} is not a number")]
    BadEnv { name: &'static str, value: String },
    #[error("--shard-count without a shard index (--shard-index, JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID)")]
    NoIndex,
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0} is not the plan of {1}: they come from different sweeps")]
    OtherPlan(PathBuf, PathBuf),
    #[error("no directory holds cell {cell} seed {seed} (looked for {rel} in {dirs})")]
    MissingRun {
        cell: usize,
        seed: u64,
        rel: String,
        dirs: String,
    },
    #[error("no directories to merge")]
    NoDirs,
    #[error(transparent)]
    Merge(#[from] MergeError),
}

impl Plan {
    /// Every run, cell-major, seeds in the given order.
    pub fn jobs(&self) -> Vec<Job> {
        (0..self.cells)
            .flat_map(|cell| self.seeds.iter().map(move |&seed| Job { cell, seed }))
            .collect()
    }

    /// The runs of `shard` (all of them without one).
    pub fn shard(&self, shard: Option<Shard>) -> Vec<Job> {
        let jobs = self.jobs();
        match shard {
            None => jobs,
            Some(s) => jobs.into_iter().skip(s.index).step_by(s.count).collect(),
        }
    }

    /// The command that reproduces the whole sweep.
    pub fn reproduce(&self) -> String {
        format!(
            "cargo xtask sweep {} --seeds {} --first-seed {}",
            self.scenario,
            self.seeds.len(),
            self.seeds.first().copied().unwrap_or(0)
        )
    }
}

/// A scenario file's hash as reports carry it.
pub fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

/// Where a run writes, relative to the output directory.
pub fn run_dir(job: Job) -> PathBuf {
    Path::new(&format!("cell-{:02}", job.cell)).join(format!("seed-{}", job.seed))
}

impl Shard {
    /// The shard from the command line, else from a batch engine's
    /// environment (`env` looks a variable up): `JOB_COMPLETION_INDEX`
    /// (Kubernetes Indexed Job; the count comes from the command line or
    /// `GROVE_SHARD_COUNT`), or `SLURM_ARRAY_TASK_ID` with
    /// `SLURM_ARRAY_TASK_COUNT` (offset by `SLURM_ARRAY_TASK_MIN`).
    pub fn resolve(
        index: Option<usize>,
        count: Option<usize>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Shard>, SweepError> {
        let num = |name: &'static str| -> Result<Option<usize>, SweepError> {
            env(name)
                .map(|v| {
                    v.trim()
                        .parse()
                        .map_err(|_| SweepError::BadEnv { name, value: v })
                })
                .transpose()
        };
        let count = match count {
            Some(c) => Some(c),
            None => num("GROVE_SHARD_COUNT")?,
        };
        let (index, count) = if let Some(i) = index {
            (i, count)
        } else if let Some(i) = num("JOB_COMPLETION_INDEX")? {
            (
                i,
                Some(count.ok_or(SweepError::NoCount("JOB_COMPLETION_INDEX"))?),
            )
        } else if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let c = count.or(num("SLURM_ARRAY_TASK_COUNT")?);
            (
                id.saturating_sub(min),
                Some(c.ok_or(SweepError::NoCount("SLURM_ARRAY_TASK_ID"))?),
            )
        } else if count.is_some() {
            return Err(SweepError::NoIndex);
        } else {
            return Ok(None);
        };
        let count = count.ok_or(SweepError::NoIndex)?;
        if index >= count {
            return Err(SweepError::ShardRange { index, count });
        }
        Ok(Some(Shard { index, count }))
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, SweepError> {
    let text = std::fs::read_to_string(path).map_err(|source| SweepError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| SweepError::Json {
        path: path.to_owned(),
        source,
    })
}

/// The plan in `dir`.
pub fn read_plan(dir: &Path) -> Result<Plan, SweepError> {
    read_json(&dir.join("sweep.json"))
}

/// Merge the runs of one sweep found in `dirs` (shards' outputs, in any
/// order; a run present in several is read from the first).
pub fn merge_dirs(dirs: &[PathBuf]) -> Result<(Plan, Merged), SweepError> {
    let first = dirs.first().ok_or(SweepError::NoDirs)?;
    let plan = read_plan(first)?;
    for d in &dirs[1..] {
        if read_plan(d)? != plan {
            return Err(SweepError::OtherPlan(d.clone(), first.clone()));
        }
    }
    let mut runs = Vec::new();
    for job in plan.jobs() {
        let rel = run_dir(job).join("report.json");
        let Some(path) = dirs.iter().map(|d| d.join(&rel)).find(|p| p.is_file()) else {
            return Err(SweepError::MissingRun {
                cell: job.cell,
                seed: job.seed,
                rel: rel.display().to_string(),
                dirs: dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        runs.push(Run {
            cell: job.cell,
            seed: job.seed,
            report: read_json(&path)?,
        });
    }
    let merged = merge::merge(&runs, plan.reproduce())?;
    Ok((plan, merged))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            scenario: "s.toml".into(),
            sha256: "x".into(),
            cells: 2,
            seeds: vec![1, 2, 3],
        }
    }

    #[test]
    fn shards_partition_the_plan_in_order() {
        let p = plan();
        let all = p.shard(None);
        assert_eq!(all.len(), 6);
        assert_eq!(all[3], Job { cell: 1, seed: 1 });
        let mut union: Vec<(usize, u64)> = (0..4)
            .flat_map(|index| p.shard(Some(Shard { index, count: 4 })))
            .map(|j| (j.cell, j.seed))
            .collect();
        union.sort();
        let mut want: Vec<(usize, u64)> = all.iter().map(|j| (j.cell, j.seed)).collect();
        want.sort();
        assert_eq!(union, want);
        assert_eq!(run_dir(all[4]), Path::new("cell-01/seed-2"));
    }

    #[test]
    fn shard_comes_from_flags_or_batch_engines() {
        let none = |_: &str| None;
        assert_eq!(Shard::resolve(None, None, none).unwrap(), None);
        assert_eq!(
            Shard::resolve(Some(1), Some(3), none).unwrap(),
            Some(Shard { index: 1, count: 3 })
        );
        assert!(Shard::resolve(Some(3), Some(3), none).is_err());
        assert!(Shard::resolve(None, Some(3), none).is_err());
        let k8s = |n: &str| (n == "JOB_COMPLETION_INDEX").then(|| "2".to_owned());
        assert_eq!(
            Shard::resolve(None, Some(4), k8s).unwrap(),
            Some(Shard { index: 2, count: 4 })
        );
        assert!(Shard::resolve(None, None, k8s).is_err());
        let slurm = |n: &str| match n {
            "SLURM_ARRAY_TASK_ID" => Some("3".to_owned()),
            "SLURM_ARRAY_TASK_MIN" => Some("1".to_owned()),
            "SLURM_ARRAY_TASK_COUNT" => Some("3".to_owned()),
            _ => None,
        };
        assert_eq!(
            Shard::resolve(None, None, slurm).unwrap(),
            Some(Shard { index: 2, count: 3 })
        );
        let bad = |n: &str| (n == "JOB_COMPLETION_INDEX").then(|| "x".to_owned());
        assert!(Shard::resolve(None, Some(2), bad).is_err());
    }
}
