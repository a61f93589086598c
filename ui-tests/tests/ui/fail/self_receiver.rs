struct Mailer;

impl Mailer {
    #[jobq::job]
    async fn send_email(&self, to: String) -> Result<(), std::io::Error> {
        let _ = to;
        Ok(())
    }
}

fn main() {}
