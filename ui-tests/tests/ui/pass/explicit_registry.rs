// The generated `Job` marker implements `jobq::Job` and can be registered by
// hand; names and aliases are looked up in the registry.

mod jobs {
    #[jobq::job(aliases = ["old_ping"])]
    pub async fn ping() -> Result<(), std::io::Error> {
        Ok(())
    }

    #[jobq::job(name = "billing.charge", queue = "billing")]
    pub async fn charge(invoice_id: i64) -> anyhow::Result<()> {
        let _ = invoice_id;
        Ok(())
    }
}

fn name_of<J: jobq::Job>() -> &'static str {
    J::DEF.name
}

fn main() -> Result<(), jobq::Error> {
    let registry = jobq::Registry::new()
        .register::<jobs::ping::Job>()?
        .register::<jobs::charge::Job>()?;
    assert_eq!(registry.len(), 2);
    assert!(registry.get("ping").is_some());
    assert!(registry.get("old_ping").is_some());
    assert_eq!(
        registry.get("billing.charge").map(|d| d.queue),
        Some("billing")
    );
    assert_eq!(registry.kinds(), ["billing.charge", "old_ping", "ping"]);
    assert_eq!(name_of::<jobs::charge::Job>(), "billing.charge");

    // Registering the same job twice is harmless.
    let registry = registry.register::<jobs::ping::Job>()?;
    assert_eq!(registry.len(), 2);
    Ok(())
}
