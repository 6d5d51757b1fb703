//! `<out>/.sphinx-run.json`: what the results under an `--out` folder were made with.

use std::path::Path;

use anyhow::{bail, Context, Result};
use sphinx_core::Task;

use super::RunArgs;

/// The model, tasks and formats of the run that owns an `--out` folder. A rerun keeps
/// every finished page and writes a document's files once, so one with another model,
/// other tasks or other formats would leave the old results under the new run's name:
/// it is refused instead.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct RunRecord {
    model: String,
    /// Sorted: the order `--task` flags came in changes nothing a result holds.
    tasks: Vec<String>,
    formats: String,
}

impl RunRecord {
    const FILE: &'static str = ".sphinx-run.json";

    pub(super) fn new(model: &str, args: &RunArgs) -> Self {
        let mut tasks: Vec<String> = args.tasks.iter().map(Task::to_string).collect();
        tasks.sort();
        tasks.dedup();
        Self {
            model: model.to_string(),
            tasks,
            formats: args.formats.to_string(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "model {}, tasks {}, formats {}",
            self.model,
            self.tasks.join(" "),
            self.formats
        )
    }

    /// Refuses a run other than the one recorded in `out`; true when one is recorded.
    pub(super) fn check(&self, out: &Path) -> Result<bool> {
        let path = out.join(Self::FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let was: Self = serde_json::from_slice(&bytes)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if was != *self {
            bail!(
                "{} holds the results of a run with {}; this run asks for {}. A rerun keeps \
                 finished pages as they are, so give another --out (or delete {} to start \
                 over)",
                out.display(),
                was.describe(),
                self.describe(),
                out.display()
            );
        }
        Ok(true)
    }

    /// Records this run in `out`, or checks it is the run recorded there.
    pub(super) fn claim(&self, out: &Path) -> Result<()> {
        if self.check(out)? {
            return Ok(());
        }
        let path = out.join(Self::FILE);
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let json = serde_json::to_vec_pretty(self).expect("strings serialize");
        std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))
    }
}
