//! `hesslab bench`: speed as ratios against baselines measured in the same run.
pub fn run(_quick: bool, _only: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("bench is not implemented yet")
}
