// Plain arguments and a `Result<(), std::io::Error>` return: every
// parameter becomes a field of `Args`, in order, with its own type.

#[jobq::job]
async fn resize_image(
    path: String,
    width: u32,
    height: u32,
    keep_ratio: bool,
) -> Result<(), std::io::Error> {
    let _ = (path, width, height, keep_ratio);
    Ok(())
}

fn main() {
    let args = resize_image::Args {
        path: "a.png".to_owned(),
        width: 640,
        height: 480,
        keep_ratio: true,
    };
    let copy = args.clone();
    assert_eq!(copy.width, 640);
    assert!(format!("{args:?}").contains("a.png"));

    // Defaults when no key is given.
    assert_eq!(resize_image::NAME, "resize_image");
    assert_eq!(resize_image::QUEUE, "default");
    assert_eq!(resize_image::RETRIES, 20);
    assert_eq!(resize_image::MAX_ATTEMPTS, 21);
    assert_eq!(resize_image::PRIORITY, 0);
    assert_eq!(resize_image::CRON, None);
    assert_eq!(resize_image::TIMEOUT, None);

    // The job's `JobDef` agrees: what it does not set is jobq's default.
    let def = &<resize_image::Job as jobq::Job>::DEF;
    assert_eq!(def.name, "resize_image");
    assert!(def.aliases.is_empty());
    assert_eq!(def.queue, resize_image::QUEUE);
    assert_eq!(def.max_attempts, resize_image::MAX_ATTEMPTS);
    assert_eq!(def.priority, resize_image::PRIORITY);
    assert_eq!(def.timeout, None);
    assert_eq!(def.cron, None);
    assert_eq!(def.tz, None);
    assert_eq!(def.catch_up, jobq::CatchUp::Latest);
    assert!(!def.unique_by_args);
    assert_eq!(def.unique_for, None);
    assert_eq!(def.limits, jobq::JobLimits::NONE);
    assert!(def.requires.is_empty());
    assert!(def.defined_at().contains("plain_args_io_result.rs"), "{}", def.defined_at());
}
