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
}
