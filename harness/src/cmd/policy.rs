//! `harness policy`: the IAM policy Coder's provisioner needs for this
//! template's resources, generated from the template (`template::iam`).

/// Arguments of `harness policy`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<i32> {
    let root = crate::repo::root()?;
    println!("{}", crate::template::iam::policy_json(&root)?);
    Ok(0)
}
