//! Driving the real `terraform` binary: init/apply/output/fmt/test in throwaway directories.
//!
//! Every run gets `TF_IN_AUTOMATION=1`, no `TF_CLI_ARGS*`, and a private
//! `TF_DATA_DIR` inside a temp dir, so no `.terraform` directory is ever
//! left in the repository.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::tools;

/// `GOGC` for Terraform and the providers it starts (see [`Terraform::run_env`]).
const GOGC: &str = "400";

/// A failed `terraform` invocation, with its stderr.
#[derive(Debug, thiserror::Error)]
#[error("`terraform {args}` in {dir} failed ({status}):\n{stderr}{stdout}")]
pub struct TerraformError {
    pub args: String,
    pub dir: PathBuf,
    pub status: String,
    pub stderr: String,
    pub stdout: String,
}

/// Captured output of a successful run.
#[derive(Debug, Clone)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

/// A terraform binary plus a private temp dir (work dir + `TF_DATA_DIR`).
/// Dropping it deletes the temp dir.
pub struct Terraform {
    bin: PathBuf,
    tmp: tempfile::TempDir,
    /// Extra environment for every run (e.g. `TF_CLI_CONFIG_FILE`).
    env: Vec<(String, std::ffi::OsString)>,
}

impl Terraform {
    /// Find `terraform` on PATH (clear `MissingTool` error) and make a temp dir.
    pub fn new() -> anyhow::Result<Self> {
        let bin = tools::find("terraform")?;
        let tmp = tempfile::Builder::new().prefix("harness-tf-").tempdir()?;
        std::fs::create_dir_all(tmp.path().join("work"))?;
        Ok(Terraform {
            bin,
            tmp,
            env: Vec::new(),
        })
    }

    /// Set `key=value` for every later run (wins over the inherited value).
    pub fn set_env(&mut self, key: &str, value: impl Into<std::ffi::OsString>) {
        self.env.push((key.to_string(), value.into()));
    }

    /// The throwaway working directory (a root module goes here).
    pub fn work_dir(&self) -> PathBuf {
        self.tmp.path().join("work")
    }

    /// The temp dir owned by this session (for copies of modules).
    pub fn tmp_dir(&self) -> &Path {
        self.tmp.path()
    }

    /// Run `terraform <args>` in `cwd`; non-zero exit → `TerraformError`.
    pub async fn run(&self, cwd: &Path, args: &[&str]) -> Result<Output, TerraformError> {
        self.run_env(cwd, args, &[], &[]).await
    }

    /// [`Terraform::run`] with extra environment for this child only: every
    /// inherited variable whose name starts with one of `clear_prefixes` is
    /// removed, then `set` is applied (e.g. `TF_CLI_CONFIG_FILE`, `CODER_*`).
    pub async fn run_env(
        &self,
        cwd: &Path,
        args: &[&str],
        set: &[(String, String)],
        clear_prefixes: &[&str],
    ) -> Result<Output, TerraformError> {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args)
            .current_dir(cwd)
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("TF_DATA_DIR", self.tmp.path().join("tf-data"))
            .env("CHECKPOINT_DISABLE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("TF_CLI_ARGS") {
                cmd.env_remove(&k);
            }
        }
        // A configured-but-missing CLI config file only adds a warning.
        if let Some(cfg) = std::env::var_os("TF_CLI_CONFIG_FILE") {
            if !Path::new(&cfg).exists() {
                cmd.env_remove("TF_CLI_CONFIG_FILE");
            }
        }
        for (k, _) in std::env::vars_os() {
            let name = k.to_string_lossy();
            if clear_prefixes.iter().any(|p| name.starts_with(p)) {
                cmd.env_remove(&k);
            }
        }
        // Go's collector at its default (GOGC=100) costs Terraform and the
        // ~700 MB hashicorp/aws provider, started two or three times per
        // run, about a fifth of their CPU (`terraform providers schema
        // -json` against 5.100.0, mean of three: 2.96 CPU-s at 100, 2.33 at
        // 400, 2.45 at 800); 400 trades it for ~150 MB more heap per
        // process. Behaviour is unchanged; a GOGC the caller sets wins.
        if std::env::var_os("GOGC").is_none() {
            cmd.env("GOGC", GOGC);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.envs(set.iter().map(|(k, v)| (k, v)));
        // Terraform gets SIGTERM when the harness dies (its signal handler's
        // exit, SIGKILL, a panic that aborts): it then stops as after
        // Ctrl-C, keeping its state and stopping its providers. Without it a
        // SIGTERM to the harness alone left `terraform-provider-aws` and
        // `terraform-provider-coder` running with no parent.
        crate::machine::qemu::process::die_with_parent(&mut cmd, libc::SIGTERM);
        let err = |status: String, stdout: String, stderr: String| TerraformError {
            args: args.join(" "),
            dir: cwd.to_path_buf(),
            status,
            stderr,
            stdout,
        };
        let out = cmd.output().await.map_err(|e| {
            err(
                format!("cannot start {}: {e}", self.bin.display()),
                "".into(),
                "".into(),
            )
        })?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            return Err(err(out.status.to_string(), stdout, stderr));
        }
        Ok(Output { stdout, stderr })
    }

    /// `terraform init -input=false -backend=false` in `cwd`.
    pub async fn init(&self, cwd: &Path) -> Result<Output, TerraformError> {
        self.run(
            cwd,
            &["init", "-input=false", "-backend=false", "-no-color"],
        )
        .await
    }

    /// `terraform apply -auto-approve` in `cwd` (state stays in `cwd`).
    pub async fn apply(&self, cwd: &Path) -> Result<Output, TerraformError> {
        self.run(
            cwd,
            &["apply", "-auto-approve", "-input=false", "-no-color"],
        )
        .await
    }

    /// `terraform output -raw <name>`: the exact string value.
    pub async fn output_raw(&self, cwd: &Path, name: &str) -> Result<String, TerraformError> {
        Ok(self
            .run(cwd, &["output", "-no-color", "-raw", name])
            .await?
            .stdout)
    }

    /// `terraform output -json`: every output's `value`.
    pub async fn output_json(&self, cwd: &Path) -> anyhow::Result<serde_json::Value> {
        let out = self.run(cwd, &["output", "-no-color", "-json"]).await?;
        let v: serde_json::Value = serde_json::from_str(&out.stdout)?;
        let mut m = serde_json::Map::new();
        if let serde_json::Value::Object(o) = v {
            for (k, v) in o {
                m.insert(k, v.get("value").cloned().unwrap_or_default());
            }
        }
        Ok(serde_json::Value::Object(m))
    }

    /// `terraform fmt -check -recursive -list=true` over `dir`; returns the
    /// files that are not formatted (empty = all formatted).
    pub async fn fmt_check(&self, dir: &Path) -> anyhow::Result<Vec<String>> {
        match self
            .run(
                dir,
                &["fmt", "-check", "-recursive", "-list=true", "-no-color"],
            )
            .await
        {
            Ok(_) => Ok(vec![]),
            Err(e) if e.status.contains("exit status: 3") => Ok(e
                .stdout
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect()),
            Err(e) => Err(e.into()),
        }
    }

    /// Copy `module_dir` (and its parent tree `copy_root`, so relative
    /// `../` sources keep working) into the temp dir, then `init` + `test`
    /// there.  Returns the test output.
    pub async fn test(&self, copy_root: &Path, module_dir: &Path) -> anyhow::Result<Output> {
        let rel = module_dir.strip_prefix(copy_root).map_err(|_| {
            anyhow::anyhow!(
                "{} is not under {}",
                module_dir.display(),
                copy_root.display()
            )
        })?;
        let dest = self.tmp.path().join("copy");
        copy_tree(copy_root, &dest)?;
        let cwd = dest.join(rel);
        self.init(&cwd).await?;
        Ok(self.run(&cwd, &["test", "-no-color"]).await?)
    }
}

/// Recursively copy `src` to `dst`, skipping `.terraform*` state and caches.
pub fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let name = e.file_name();
        let n = name.to_string_lossy();
        if n == ".terraform" || n.starts_with("terraform.tfstate") || n == ".terraform.lock.hcl" {
            continue;
        }
        let ty = e.file_type()?;
        if ty.is_dir() {
            copy_tree(&e.path(), &dst.join(&name))?;
        } else if ty.is_file() {
            std::fs::copy(e.path(), dst.join(&name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    /// A harness that dies while Terraform runs takes it down gracefully:
    /// a stand-in `terraform` started from a thread that then ends (as the
    /// harness's threads do when it exits) gets SIGTERM.
    #[test]
    fn terraform_gets_sigterm_when_the_harness_goes() {
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen");
        let bin = dir.path().join("terraform");
        std::fs::write(
            &bin,
            format!(
                "#!/bin/sh\ntrap 'echo TERM > {}; exit 0' TERM\necho started > {}\ni=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n",
                seen.display(),
                seen.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tf = Terraform {
            bin,
            tmp: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        };
        let work = dir.path().to_path_buf();
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let run = Box::pin(tf.run(&work, &["apply"]));
                let mut run = std::mem::ManuallyDrop::new(run);
                // Run until the stand-in has started, then leave it running
                // (never dropped: no kill_on_drop) and end the thread.
                while std::fs::read_to_string(&seen2).unwrap_or_default() != "started\n" {
                    let _ = tokio::time::timeout(Duration::from_millis(100), &mut *run).await;
                }
            });
            std::mem::forget(rt);
        })
        .join()
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::fs::read_to_string(&seen).unwrap_or_default() != "TERM\n" {
            assert!(
                std::time::Instant::now() < deadline,
                "expected the stand-in terraform to get SIGTERM when its thread ended; it wrote {:?}",
                std::fs::read_to_string(&seen).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    #[tokio::test]
    async fn apply_and_output_a_tiny_module() {
        let tf = Terraform::new().unwrap();
        let w = tf.work_dir();
        std::fs::write(
            w.join("main.tf"),
            "variable \"x\" {\n  type = string\n}\noutput \"y\" {\n  value = \"<${var.x}>\"\n}\n",
        )
        .unwrap();
        std::fs::write(w.join("t.auto.tfvars.json"), r#"{"x":"a\"b"}"#).unwrap();
        tf.init(&w).await.unwrap();
        tf.apply(&w).await.unwrap();
        assert_eq!(tf.output_raw(&w, "y").await.unwrap(), "<a\"b>");
        assert_eq!(tf.output_json(&w).await.unwrap()["y"], "<a\"b>");
        assert!(
            !w.join(".terraform").exists(),
            "TF_DATA_DIR must be private"
        );
    }

    #[tokio::test]
    async fn errors_carry_stderr_and_fmt_lists_files() {
        let tf = Terraform::new().unwrap();
        let w = tf.work_dir();
        std::fs::write(w.join("main.tf"), "output \"y\" {\nvalue = var.nope\n}\n").unwrap();
        let e = tf.init(&w).await.and(tf.apply(&w).await).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let bad = tf.fmt_check(&w).await.unwrap();
        assert_eq!(bad, vec!["main.tf".to_string()]);
        std::fs::write(w.join("main.tf"), "output \"y\" {\n  value = 1\n}\n").unwrap();
        assert!(tf.fmt_check(&w).await.unwrap().is_empty());
    }
}
