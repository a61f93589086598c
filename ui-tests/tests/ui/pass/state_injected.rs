// `jobq::State<T>` parameters are injected by the worker, in any position;
// only the other parameters become fields of `Args`.

use jobq::State;

struct Mailer {
    from: String,
}

struct Templates;

#[jobq::job(queue = "email")]
async fn send_email(
    mailer: jobq::State<Mailer>,
    to: String,
    templates: State<Templates>,
    subject: String,
) -> Result<(), std::io::Error> {
    let _ = (&mailer.from, &*templates, to, subject);
    Ok(())
}

fn main() {
    // `Args` has exactly `to` and `subject`: this struct literal is complete.
    let args = send_email::Args {
        to: "ada@example.com".to_owned(),
        subject: "hi".to_owned(),
    };
    let _ = args;
    let state = State::new(std::sync::Arc::new(Mailer {
        from: "jobs@example.com".to_owned(),
    }));
    assert_eq!(state.from, "jobs@example.com");
}
