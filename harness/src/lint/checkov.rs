//! `checkov` (PyPI, Apache-2.0): the static analyser template authors run on
//! Terraform, over `templates/` with its Terraform checks (the AWS ones:
//! IMDSv2, EBS encryption, …). Every failed check is a finding unless the
//! template skips it inline with a reason
//! (`# checkov:skip=CKV_AWS_xx: why`, next to the resource).
//!
//! checkov lives in its own venv (`ci/setup-debian.sh`: it pins boto3,
//! botocore and networkx to versions older than moto needs), linked as
//! `checkov` on PATH; `HARNESS_CHECKOV` points at another binary.

use std::path::Path;

use serde_json::Value;

use crate::report::Status;

/// Gate/lint check name.
pub const CHECK: &str = "checkov";

/// One failed checkov check.
#[derive(Debug, Clone, PartialEq)]
pub struct Failed {
    pub id: String,
    pub name: String,
    pub resource: String,
    /// `file:first-last`, relative to `templates/`.
    pub at: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {} ({})",
            self.id, self.name, self.resource, self.at
        )
    }
}

/// The failed checks in checkov's JSON report (one framework: an object;
/// several: a list of them).
pub fn parse(json: &str) -> anyhow::Result<Vec<Failed>> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| anyhow::anyhow!("checkov printed no JSON report ({e}): {json:.400}"))?;
    let reports = match v {
        Value::Array(a) => a,
        o => vec![o],
    };
    let mut out = vec![];
    for r in &reports {
        // A file checkov could not parse was not checked at all.
        for p in r["results"]["parsing_errors"]
            .as_array()
            .into_iter()
            .flatten()
        {
            out.push(Failed {
                id: "PARSE".into(),
                name: "checkov could not parse this file, so none of its checks ran".into(),
                resource: "-".into(),
                at: p
                    .as_str()
                    .unwrap_or("?")
                    .trim_start_matches('/')
                    .to_string(),
            });
        }
        for c in r["results"]["failed_checks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
            let lines = c["file_line_range"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_u64)
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join("-")
                })
                .unwrap_or_default();
            out.push(Failed {
                id: s("check_id"),
                name: s("check_name"),
                resource: s("resource"),
                at: format!("{}:{lines}", s("file_path").trim_start_matches('/')),
            });
        }
    }
    Ok(out)
}

/// Run checkov on `root/templates`: passed, failed with every failed
/// check, or skipped (checkov missing) with the reason.
pub async fn check(root: &Path) -> Status {
    let bin = match crate::tools::find("checkov") {
        Ok(b) => b,
        Err(_) => {
            return Status::Skipped(
                "checkov not found on PATH (ci/setup-debian.sh installs it from PyPI into /opt/harness-checkov-venv and links /usr/local/bin/checkov; HARNESS_CHECKOV=<path> overrides)".into(),
            )
        }
    };
    let dir = root.join("templates");
    let out = tokio::process::Command::new(&bin)
        .args(["-d"])
        .arg(&dir)
        .args([
            "--framework",
            "terraform",
            "--output",
            "json",
            "--compact",
            "--quiet",
            // No Prisma Cloud/Bridgecrew download: offline, same result.
            "--skip-download",
            "--soft-fail",
        ])
        .env("BC_SKIP_MAPPING", "TRUE")
        .env("CHECKOV_RUN_SCA_PACKAGE_SCAN_V2", "false")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    let out = match out {
        Ok(o) => o,
        Err(e) => return Status::Failed(format!("cannot run {}: {e}", bin.display())),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Status::Failed(format!(
            "`checkov -d {}` exited with {}: {}{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            stdout
        ));
    }
    // A directory with no failed check may print `[]` or a summary-only object.
    match parse(if stdout.trim().is_empty() { "[]" } else { &stdout }) {
        Ok(f) if f.is_empty() => Status::Passed,
        Ok(f) => Status::Failed(format!(
            "checkov found {} failed check(s) in {} (fix them, or skip inline with `# checkov:skip=<ID>: <reason>`):\n{}",
            f.len(),
            dir.display(),
            f.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("\n")
        )),
        Err(e) => Status::Failed(format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_failed_checks_of_one_or_several_frameworks() {
        let one = r#"{"check_type":"terraform","results":{"failed_checks":[{"check_id":"CKV_AWS_79","check_name":"Ensure Instance Metadata Service Version 1 is not enabled","resource":"module.instance.aws_instance.this","file_path":"/modules/ec2-instance/main.tf","file_line_range":[80,118]}]},"summary":{"failed":1}}"#;
        let f = parse(one).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].to_string(),
            "CKV_AWS_79 Ensure Instance Metadata Service Version 1 is not enabled: module.instance.aws_instance.this (modules/ec2-instance/main.tf:80-118)"
        );
        assert_eq!(parse(&format!("[{one},{one}]")).unwrap().len(), 2);
        assert!(parse("[]").unwrap().is_empty());
        assert!(parse("not json").is_err());
    }
}
