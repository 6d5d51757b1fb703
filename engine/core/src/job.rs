//! What to run on a page: the [`PageJob`] message the tiler sends per page and the
//! worker consumes, the [`Task`] list it carries, and the per-upload [`SidecarSpec`]
//! sidecar. Defined once here so the Lambda, the worker and local mode agree.
//!
//! Tasks come from three places, most specific first: S3 object metadata
//! (`x-amz-meta-sphinx-tasks: ocr,caption`), a `<key>.job.json` sidecar uploaded
//! before the document, and the stack default (environment). The comma list syntax
//! is [`parse_tasks`]; the sidecar holds the JSON form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Version of the [`PageJob`] JSON schema; bumped on any incompatible change.
pub const PAGE_JOB_VERSION: u32 = 1;
/// Version of the [`SidecarSpec`] sidecar schema.
pub const JOB_SPEC_VERSION: u32 = 1;
/// Suffix of a job sidecar: the spec for `inbox/a.pdf` is `inbox/a.pdf.job.json`.
pub const JOB_SPEC_SUFFIX: &str = ".job.json";
/// Name of the S3 user metadata entry holding a comma task list (`x-amz-meta-sphinx-tasks`).
pub const TASKS_METADATA: &str = "sphinx-tasks";

/// How long a caption should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptionDetail {
    /// "Generate a detailed description about the image." (the reference's caption prompt)
    Detailed,
    /// A one-sentence caption.
    Short,
}

/// One thing to do with a page.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case", deny_unknown_fields)]
pub enum Task {
    /// Describe the page.
    Caption { detail: CaptionDetail },
    /// Detect all texts with their boxes.
    Ocr,
    /// Box the region a sentence describes.
    Grounding { query: String },
    /// Answer a free-form question about the page.
    Ask { question: String },
}

/// A task list or sidecar that cannot be used, with the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("empty task list")]
    NoTasks,
    #[error("unknown task {0:?} (expected ocr, caption[:short|:detailed], grounding:<query>, ask:<question>)")]
    UnknownTask(String),
    #[error("task {task:?} needs a non-empty argument after ':'")]
    MissingArgument { task: String },
    #[error("task {task:?} takes no argument {argument:?}")]
    UnexpectedArgument { task: String, argument: String },
    #[error("invalid job spec: {0}")]
    InvalidSpec(String),
    #[error("{count} tasks asked for; at most {MAX_TASKS} (each costs a generation per page)")]
    TooManyTasks { count: usize },
    #[error(
        "the {task} text is {chars} characters; at most {MAX_TASK_TEXT} (it goes into the \
         prompt of every page)"
    )]
    TextTooLong { task: &'static str, chars: usize },
    #[error("unsupported {what} schema version {found} (this build reads {expected})")]
    Version {
        what: &'static str,
        found: u32,
        expected: u32,
    },
}

impl FromStr for Task {
    type Err = JobError;

    /// One entry of a comma list: `ocr`, `caption`, `caption:short`, `caption:detailed`,
    /// `grounding:<query>`, `ask:<question>` (names case-insensitive, arguments verbatim).
    fn from_str(s: &str) -> Result<Self, JobError> {
        let s = s.trim();
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (s, None),
        };
        let name_lc = name.to_ascii_lowercase();
        let needs_arg = |arg: Option<&str>| match arg {
            Some(a) if !a.is_empty() => Ok(a.to_string()),
            _ => Err(JobError::MissingArgument {
                task: name_lc.clone(),
            }),
        };
        let no_arg = |arg: Option<&str>| match arg {
            Some(a) => Err(JobError::UnexpectedArgument {
                task: name_lc.clone(),
                argument: a.to_string(),
            }),
            None => Ok(()),
        };
        match name_lc.as_str() {
            "ocr" => no_arg(arg).map(|()| Task::Ocr),
            "caption" => match arg.map(str::to_ascii_lowercase).as_deref() {
                None | Some("detailed") => Ok(Task::Caption {
                    detail: CaptionDetail::Detailed,
                }),
                Some("short") => Ok(Task::Caption {
                    detail: CaptionDetail::Short,
                }),
                Some(other) => Err(JobError::UnexpectedArgument {
                    task: name_lc.clone(),
                    argument: other.to_string(),
                }),
            },
            "grounding" => needs_arg(arg).map(|query| Task::Grounding { query }),
            "ask" => needs_arg(arg).map(|question| Task::Ask { question }),
            _ => Err(JobError::UnknownTask(s.to_string())),
        }
    }
}

impl fmt::Display for Task {
    /// The comma-list form, so `parse_tasks(&format_tasks(t)) == t` when no argument
    /// contains a comma.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Task::Caption {
                detail: CaptionDetail::Detailed,
            } => f.write_str("caption"),
            Task::Caption {
                detail: CaptionDetail::Short,
            } => f.write_str("caption:short"),
            Task::Ocr => f.write_str("ocr"),
            Task::Grounding { query } => write!(f, "grounding:{query}"),
            Task::Ask { question } => write!(f, "ask:{question}"),
        }
    }
}

/// Parses a comma list such as `"ocr,caption"` (the form used in S3 metadata and
/// environment variables). Duplicates are dropped, order is kept. Arguments cannot
/// contain commas; use a [`SidecarSpec`] sidecar for those.
pub fn parse_tasks(list: &str) -> Result<Vec<Task>, JobError> {
    let tasks = list
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(str::parse)
        .collect::<Result<Vec<Task>, _>>()?;
    check_tasks(tasks)
}

/// Most distinct tasks one upload may ask for: each is a generation on every page.
pub const MAX_TASKS: usize = 16;
/// Most characters of a grounding query or a question: each is in every page's prompt.
pub const MAX_TASK_TEXT: usize = 2000;

/// The tasks an upload asked for (its metadata or its sidecar), duplicates dropped in
/// order, within the bounds above: what the uploader controls is bounded before any page
/// is tiled for it.
pub fn check_tasks(asked: Vec<Task>) -> Result<Vec<Task>, JobError> {
    let mut tasks: Vec<Task> = Vec::new();
    for task in asked {
        let text = match &task {
            Task::Grounding { query } => Some(("grounding query", query)),
            Task::Ask { question } => Some(("question", question)),
            Task::Ocr | Task::Caption { .. } => None,
        };
        if let Some((what, text)) = text {
            let chars = text.chars().count();
            if chars > MAX_TASK_TEXT {
                return Err(JobError::TextTooLong { task: what, chars });
            }
        }
        if !tasks.contains(&task) {
            tasks.push(task);
        }
    }
    match tasks.len() {
        0 => Err(JobError::NoTasks),
        count if count > MAX_TASKS => Err(JobError::TooManyTasks { count }),
        _ => Ok(tasks),
    }
}

/// The comma-list form of `tasks` (inverse of [`parse_tasks`]).
pub fn format_tasks(tasks: &[Task]) -> String {
    tasks
        .iter()
        .map(Task::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A `<key>.job.json` sidecar: what to run on the document uploaded as `<key>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarSpec {
    pub schema_version: u32,
    pub tasks: Vec<Task>,
}

impl SidecarSpec {
    /// Parses and checks a sidecar (known version, at least one task).
    pub fn from_json(bytes: &[u8]) -> Result<Self, JobError> {
        let spec: SidecarSpec =
            serde_json::from_slice(bytes).map_err(|e| JobError::InvalidSpec(e.to_string()))?;
        if spec.schema_version != JOB_SPEC_VERSION {
            return Err(JobError::Version {
                what: "job spec",
                found: spec.schema_version,
                expected: JOB_SPEC_VERSION,
            });
        }
        Ok(SidecarSpec {
            tasks: check_tasks(spec.tasks)?,
            ..spec
        })
    }
}

/// The key of the sidecar that configures the upload at `key`.
pub fn sidecar_key(key: &str) -> String {
    format!("{key}{JOB_SPEC_SUFFIX}")
}

/// True for keys that are sidecars rather than documents.
pub fn is_sidecar(key: &str) -> bool {
    key.ends_with(JOB_SPEC_SUFFIX)
}

/// One page to run through the model: the message on the infer queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageJob {
    pub schema_version: u32,
    /// SHA-256 of the uploaded bytes (see [`crate::keys::doc_id`]).
    pub doc_id: String,
    /// The name the document was uploaded under (its key below `inbox/`).
    pub source: String,
    /// Zero-based page index.
    pub page_index: u32,
    /// Pages in the whole document.
    pub page_count: u32,
    /// Object holding the page's views ([`crate::keys::page_bundle`]).
    pub bundle_key: String,
    /// What to run, in order.
    pub tasks: Vec<Task>,
}

impl PageJob {
    /// The job for page `page_index` of a document, with its bundle key derived.
    pub fn new(
        doc_id: &str,
        source: &str,
        page_index: u32,
        page_count: u32,
        tasks: Vec<Task>,
    ) -> Self {
        PageJob {
            schema_version: PAGE_JOB_VERSION,
            doc_id: doc_id.to_string(),
            source: source.to_string(),
            page_index,
            page_count,
            bundle_key: crate::keys::page_bundle(doc_id, page_index),
            tasks,
        }
    }

    /// The message body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("page job serializes")
    }

    /// Parses a message body, refusing other schema versions.
    pub fn from_json(body: &str) -> Result<Self, JobError> {
        let job: PageJob =
            serde_json::from_str(body).map_err(|e| JobError::InvalidSpec(e.to_string()))?;
        if job.schema_version != PAGE_JOB_VERSION {
            return Err(JobError::Version {
                what: "page job",
                found: job.schema_version,
                expected: PAGE_JOB_VERSION,
            });
        }
        Ok(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_lists_parse_to_typed_tasks() {
        assert_eq!(
            parse_tasks("ocr,caption").unwrap(),
            vec![
                Task::Ocr,
                Task::Caption {
                    detail: CaptionDetail::Detailed
                }
            ]
        );
        assert_eq!(
            parse_tasks(" OCR , caption:short,grounding: the red stamp ,ask:Who signed?,ocr")
                .unwrap(),
            vec![
                Task::Ocr,
                Task::Caption {
                    detail: CaptionDetail::Short
                },
                Task::Grounding {
                    query: "the red stamp".into()
                },
                Task::Ask {
                    question: "Who signed?".into()
                },
            ]
        );
    }

    #[test]
    fn what_an_upload_asks_for_is_bounded() {
        let many: Vec<String> = (0..=MAX_TASKS)
            .map(|i| format!("ask:question {i}"))
            .collect();
        assert_eq!(
            parse_tasks(&many.join(",")),
            Err(JobError::TooManyTasks {
                count: MAX_TASKS + 1
            })
        );
        // Duplicates are one task, so they count once.
        let same = vec!["ocr"; 3 * MAX_TASKS].join(",");
        assert_eq!(parse_tasks(&same).unwrap(), vec![Task::Ocr]);
        let long = format!("grounding:{}", "é".repeat(MAX_TASK_TEXT + 1));
        let err = parse_tasks(&long).unwrap_err();
        assert_eq!(
            err,
            JobError::TextTooLong {
                task: "grounding query",
                chars: MAX_TASK_TEXT + 1
            }
        );
        assert!(err.to_string().contains("at most 2000"), "{err}");
        let exactly = format!("ask:{}", "x".repeat(MAX_TASK_TEXT));
        assert!(parse_tasks(&exactly).is_ok());
        // A sidecar is held to the same bounds, and its duplicates dropped.
        let tasks: Vec<String> = (0..=MAX_TASKS)
            .map(|i| format!(r#"{{"task":"ask","question":"q{i}"}}"#))
            .collect();
        let sidecar = format!(r#"{{"schema_version":1,"tasks":[{}]}}"#, tasks.join(","));
        assert!(matches!(
            SidecarSpec::from_json(sidecar.as_bytes()),
            Err(JobError::TooManyTasks { .. })
        ));
        let twice = br#"{"schema_version":1,"tasks":[{"task":"ocr"},{"task":"ocr"}]}"#;
        assert_eq!(
            SidecarSpec::from_json(twice).unwrap().tasks,
            vec![Task::Ocr]
        );
    }

    #[test]
    fn bad_lists_name_the_problem() {
        assert_eq!(parse_tasks(" , "), Err(JobError::NoTasks));
        assert_eq!(
            parse_tasks("ocr,summarize"),
            Err(JobError::UnknownTask("summarize".into()))
        );
        assert!(matches!(
            parse_tasks("grounding"),
            Err(JobError::MissingArgument { .. })
        ));
        assert!(matches!(
            parse_tasks("ask: "),
            Err(JobError::MissingArgument { .. })
        ));
        assert!(matches!(
            parse_tasks("ocr:x"),
            Err(JobError::UnexpectedArgument { .. })
        ));
        assert!(matches!(
            parse_tasks("caption:long"),
            Err(JobError::UnexpectedArgument { .. })
        ));
    }

    #[test]
    fn display_round_trips() {
        let tasks = parse_tasks("caption:short,ocr,grounding:a cat,ask:why?,caption").unwrap();
        assert_eq!(parse_tasks(&format_tasks(&tasks)).unwrap(), tasks);
    }

    #[test]
    fn page_job_json_is_versioned_and_tagged() {
        let job = PageJob::new(
            "abc",
            "scan.pdf",
            2,
            5,
            parse_tasks("ocr,grounding:total").unwrap(),
        );
        let value: serde_json::Value = serde_json::from_str(&job.to_json()).unwrap();
        assert_eq!(value["schema_version"], 1);
        assert_eq!(value["bundle_key"], "work/abc/page-0002.bundle");
        assert_eq!(value["tasks"][0], serde_json::json!({"task": "ocr"}));
        assert_eq!(
            value["tasks"][1],
            serde_json::json!({"task": "grounding", "query": "total"})
        );
        assert_eq!(PageJob::from_json(&job.to_json()).unwrap(), job);
        let future = job
            .to_json()
            .replace("\"schema_version\":1", "\"schema_version\":9");
        assert!(matches!(
            PageJob::from_json(&future),
            Err(JobError::Version { found: 9, .. })
        ));
    }

    #[test]
    fn sidecars_are_checked() {
        let spec = SidecarSpec::from_json(
            br#"{"schema_version":1,"tasks":[{"task":"caption","detail":"short"},{"task":"ask","question":"a, b?"}]}"#,
        )
        .unwrap();
        assert_eq!(
            spec.tasks[1],
            Task::Ask {
                question: "a, b?".into()
            }
        );
        assert!(matches!(
            SidecarSpec::from_json(br#"{"schema_version":1,"tasks":[]}"#),
            Err(JobError::NoTasks)
        ));
        assert!(matches!(
            SidecarSpec::from_json(br#"{"schema_version":1,"tasks":[{"task":"paint"}]}"#),
            Err(JobError::InvalidSpec(_))
        ));
        assert!(matches!(
            SidecarSpec::from_json(br#"{"schema_version":2,"tasks":[{"task":"ocr"}]}"#),
            Err(JobError::Version { .. })
        ));
        assert_eq!(sidecar_key("inbox/a.pdf"), "inbox/a.pdf.job.json");
        assert!(is_sidecar("inbox/a.pdf.job.json") && !is_sidecar("inbox/a.pdf"));
    }
}
