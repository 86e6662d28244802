//! `harness render`: print the user-data real Terraform renders for a variant.

use std::collections::BTreeMap;

/// Arguments of `harness render`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Variant name (a `values/<name>.yml` stem).
    pub variant: String,
    /// Override a bootstrap module input, e.g. `--var flake_uri=github:me/cfg`.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = crate::template::render::parse_var)]
    pub vars: Vec<(String, String)>,
}

pub async fn run(args: Args) -> anyhow::Result<i32> {
    crate::report::gate::until_ctrl_c(run_inner(args)).await
}

async fn run_inner(args: Args) -> anyhow::Result<i32> {
    let root = crate::repo::root()?;
    let variant = crate::template::values::find(&root, &args.variant)?;
    let vars: BTreeMap<String, String> = args.vars.into_iter().collect();
    let ud = crate::template::render::render_user_data(&root, &variant, &vars).await?;
    use std::io::Write;
    std::io::stdout().write_all(ud.as_bytes())?;
    Ok(0)
}
