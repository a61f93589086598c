// Every error in the attribute and the function is reported in one compile,
// each on its own token, not only the first.
#[jobq::job(
    queue = "my queue",
    retries = 5000,
    timeout = "soon",
    priority = -40000,
    cron = "every day",
    name = "export",
    aliases = ["export"],
    queue = "reports",
)]
fn export(report_id: &str, (a, b): (u8, u8)) -> Option<()> {
    let _ = (report_id, a, b);
    None
}

fn main() {}
