//! ctrl-c in `sphinx run`, through the binary with the committed nano: the first one
//! finishes the running batch and reports the rest as interrupted (exit status 130), the
//! same command again finishes them; a second one ends the process at once, and cleanly:
//! no panic from inside libtorch while the model still runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const FRONT: &str = env!("CARGO_BIN_EXE_sphinx");

/// One-line synthetic pages, the nano's kind: enough that a run takes seconds.
fn pages(dir: &Path, count: u32) -> PathBuf {
    let out = Command::new(FRONT)
        .args([
            "synth",
            "--seed",
            "5",
            "--count",
            &count.to_string(),
            "--out",
        ])
        .arg(dir)
        .args(["--page", "256x64", "--max-lines", "1", "--ocr-only"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("images")
}

fn spawn_run(images: &Path, out: &Path) -> Child {
    Command::new(FRONT)
        .arg("run")
        .arg(images)
        .arg("--out")
        .arg(out)
        .arg("--quiet")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A run of 400 pages (folder, its images, `--out`) whose model is running: its first
/// merged result is written.
fn running_run() -> (tempfile::TempDir, PathBuf, PathBuf, Child) {
    let tmp = tempfile::tempdir().unwrap();
    let images = pages(&tmp.path().join("synth"), 400);
    let out = tmp.path().join("out");
    let mut child = spawn_run(&images, &out);
    wait_for_a_result(&mut child, &out);
    (tmp, images, out, child)
}

/// Waits until the run has written its first merged result (so the model is running).
fn wait_for_a_result(child: &mut Child, out: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let merged = std::fs::read_dir(out.join("results"))
            .map(|d| {
                d.flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "json"))
            })
            .unwrap_or(false);
        if merged {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first result"
        );
        assert!(Instant::now() < deadline, "no result after 120 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn interrupt(child: &Child) {
    // SAFETY: a plain syscall on our own child's pid.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0);
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `status` of each line of `<out>/documents.jsonl`.
fn statuses(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("documents.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["status"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn one_ctrl_c_stops_the_run_and_the_same_command_finishes_it() {
    let (_tmp, images, out, child) = running_run();
    // The front handed the engine a short OpenMP spin (sphinx_cli::engine::OMP_SPIN),
    // as this test's environment chose none.
    if std::env::var_os("GOMP_SPINCOUNT").is_none() && std::env::var_os("OMP_WAIT_POLICY").is_none()
    {
        let environ = std::fs::read(format!("/proc/{}/environ", child.id())).unwrap();
        let (name, value) = sphinx_cli::engine::OMP_SPIN;
        let wanted = format!("{name}={value}");
        assert!(
            environ.split(|&b| b == 0).any(|v| v == wanted.as_bytes()),
            "the engine runs without {wanted}"
        );
    }
    interrupt(&child);
    let stopped: Output = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&stopped.stdout), text(&stopped.stderr));
    assert_eq!(stopped.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let first = statuses(&out);
    assert_eq!(first.len(), 400);
    let count = |s: &str| first.iter().filter(|x| *x == s).count();
    assert!(count("ok") > 0 && count("interrupted") > 0, "{first:?}");
    assert_eq!(count("ok") + count("interrupted"), 400, "{first:?}");
    assert!(stdout.contains("  STOPPED "), "{stdout}");

    let again = spawn_run(&images, &out).wait_with_output().unwrap();
    let stdout = text(&again.stdout);
    assert!(again.status.success(), "{stdout}\n{}", text(&again.stderr));
    assert!(statuses(&out).iter().all(|s| s == "ok"));
    // The rate is of the pages this run computed, not of those the first one did.
    let header = stdout.lines().next().unwrap();
    let number_before = |tail: &str| -> u32 {
        let head = &header[..header
            .find(tail)
            .unwrap_or_else(|| panic!("{tail:?}: {header}"))];
        head.rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (pages, now, earlier) = (
        number_before(" pages ("),
        number_before(" run now, "),
        number_before(" by an earlier run)"),
    );
    assert!(now > 0 && earlier > 0 && now + earlier == pages, "{header}");
}

#[test]
fn a_second_ctrl_c_ends_the_run_at_once_without_a_panic() {
    let (_tmp, _images, out, child) = running_run();
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(20));
    interrupt(&child);
    let ended = child.wait_with_output().unwrap();
    let stderr = text(&ended.stderr);
    assert_eq!(ended.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("ctrl-c again to abort"), "{stderr}");
    // Before, `exit` tore libtorch's globals down under the running model: a panic with
    // a page of C++ frames.
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Aborted, not finished: no summary, no index.
    assert!(
        !out.join("documents.jsonl").exists(),
        "{}",
        text(&ended.stdout)
    );
}
