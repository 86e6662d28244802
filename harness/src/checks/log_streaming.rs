//! Log streaming: rebuild output reaches the control plane's agent-logs
//! API WHILE the rebuild runs, not only at the end; and the final
//! lifecycle state is `ready` (good flake) or `start_error` (broken flake).

use std::time::{Duration, SystemTime};

use crate::control::ControlPlane;

use super::{Evidence, Verdict};

/// Lines must arrive at least this long before the rebuild ended.
pub const EARLY: Duration = Duration::from_secs(2);

const FINAL: [&str; 4] = ["ready", "start_error", "start_timeout", "shutdown_error"];

/// A startup that streams sends its first line (the script's first `echo`)
/// right after `starting`; one that buffers sends it only when the script
/// is over, however long delivering the burst then takes (17 lines, one
/// request each, can take longer than [`EARLY`] on an emulated guest).
/// `Some(why)` when the first line came in the second half of the
/// `starting` → final window (of at least 2 × [`EARLY`]).
fn late_first_line(
    lc: &[crate::control::LifecycleReport],
    first: SystemTime,
    end: SystemTime,
) -> Option<String> {
    let start = lc.iter().find(|r| r.state == "starting")?.received;
    let window = end.duration_since(start).ok()?;
    let at = first.duration_since(start).unwrap_or_default();
    (window >= 2 * EARLY && at > window / 2).then(|| {
        format!(
            "{:.1}s into a {:.1}s startup (after its middle)",
            at.as_secs_f32(),
            window.as_secs_f32()
        )
    })
}

/// Wait (up to `within`) for a final lifecycle state, then judge.
pub async fn check(
    cp: &dyn ControlPlane,
    expect_final: &str,
    within: Duration,
) -> anyhow::Result<Verdict> {
    let v = Verdict::new(
        "log streaming",
        format!(
            "rebuild log lines reach the agent-logs API at least {EARLY:?} before the rebuild ends; final lifecycle state {expect_final}"
        ),
    );
    let start = std::time::Instant::now();
    let end = loop {
        let lc = cp.lifecycle().await?;
        if let Some(r) = lc.iter().find(|r| FINAL.contains(&r.state.as_str())) {
            break Some(r.clone());
        }
        if start.elapsed() > within {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let logs = cp.logs().await?;
    let lc = cp.lifecycle().await?;
    let v = v.with(Evidence {
        how: format!("control plane: {}", cp.describe()),
        output: format!(
            "lifecycle: {}\nlog lines received: {}\n{}",
            lc.iter()
                .map(|r| r.state.as_str())
                .collect::<Vec<_>>()
                .join(" → "),
            logs.len(),
            logs.iter()
                .take(5)
                .map(|l| l.output.clone())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    });
    let Some(end) = end else {
        return Ok(v.fail(format!("no final lifecycle state within {within:?}")));
    };
    if logs.is_empty() {
        return Ok(v.fail("no rebuild log line ever reached the agent-logs API"));
    }
    let first = logs
        .iter()
        .map(|l| l.received)
        .min()
        .unwrap_or(SystemTime::now());
    let lead = end.received.duration_since(first).unwrap_or_default();
    if let Some(late) = late_first_line(&lc, first, end.received) {
        return Ok(v.fail(format!(
            "the first of {} lines arrived {late}: logs were delivered at the end, not streamed",
            logs.len()
        )));
    }
    if lead < EARLY {
        return Ok(v.fail(format!(
            "the first of {} lines arrived only {:.1}s before the rebuild ended: logs were delivered at the end, not streamed",
            logs.len(),
            lead.as_secs_f32()
        )));
    }
    if end.state != expect_final {
        return Ok(v.fail(format!(
            "final lifecycle state {} (logs streamed fine)",
            end.state
        )));
    }
    Ok(v.pass(format!(
        "{} lines, the first {:.1}s before the rebuild ended; final state {}",
        logs.len(),
        lead.as_secs_f32(),
        end.state
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::LifecycleReport;

    #[test]
    fn a_first_line_after_the_middle_of_the_startup_is_late() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let s = |secs: f64| t0 + Duration::from_secs_f64(secs);
        let lc = vec![LifecycleReport {
            state: "starting".into(),
            received: s(0.0),
        }];
        // Streamed: the first line right after `starting`.
        assert_eq!(late_first_line(&lc, s(1.2), s(10.0)), None);
        // Buffered: the burst starts when the script is over.
        let why = late_first_line(&lc, s(9.0), s(12.0)).unwrap();
        assert!(why.contains("9.0s into a 12.0s startup"), "{why}");
        // Too short a startup to judge, or no `starting` report: no verdict.
        assert_eq!(late_first_line(&lc, s(3.0), s(3.5)), None);
        assert_eq!(late_first_line(&[], s(9.0), s(12.0)), None);
    }
}
