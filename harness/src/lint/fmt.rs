//! Lint: `terraform fmt -check -recursive` over `templates/`.

use std::path::Path;

use super::Finding;
use crate::template::terraform::Terraform;

pub async fn check_dir(dir: &Path) -> Vec<Finding> {
    let tf = match Terraform::new() {
        Ok(t) => t,
        Err(e) => {
            return vec![Finding::new(
                "terraform-fmt",
                "terraform",
                None,
                format!("{e:#}"),
            )]
        }
    };
    match tf.fmt_check(dir).await {
        Ok(files) => files
            .into_iter()
            .map(|f| {
                Finding::new(
                    "terraform-fmt",
                    dir.join(&f),
                    None,
                    "not formatted: run `terraform fmt -recursive`",
                )
            })
            .collect(),
        Err(e) => vec![Finding::new("terraform-fmt", dir, None, format!("{e:#}"))],
    }
}

pub async fn check(root: &Path) -> Vec<Finding> {
    check_dir(&root.join("templates")).await
}
