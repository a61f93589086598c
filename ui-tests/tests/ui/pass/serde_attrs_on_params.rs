// `#[serde(...)]` on a parameter is carried to its field of `Args` (and
// removed from the function, where it would not compile).

#[jobq::job]
async fn notify(
    user_id: i64,
    #[serde(default)] cc: Vec<String>,
    #[serde(rename = "msg")] message: String,
    #[serde(default, rename = "prio")] urgency: u8,
) -> Result<(), std::io::Error> {
    let _ = (user_id, cc, message, urgency);
    Ok(())
}

fn main() {
    // `cc` and `prio` are missing: `#[serde(default)]` fills them in;
    // `message` is read from the key `msg`.
    let args: notify::Args =
        serde_json::from_str(r#"{"user_id": 7, "msg": "hello"}"#).expect("decodes");
    assert_eq!(args.user_id, 7);
    assert!(args.cc.is_empty());
    assert_eq!(args.message, "hello");
    assert_eq!(args.urgency, 0);

    // The renames hold when writing too.
    let json = serde_json::to_value(&notify::Args {
        user_id: 1,
        cc: vec!["b@example.com".to_owned()],
        message: "m".to_owned(),
        urgency: 3,
    })
    .expect("encodes");
    assert_eq!(
        json,
        serde_json::json!({"user_id": 1, "cc": ["b@example.com"], "msg": "m", "prio": 3})
    );

    // Without `#[serde(default)]` a field is required.
    let err = serde_json::from_str::<notify::Args>(r#"{"msg": "hello"}"#).unwrap_err();
    assert!(err.to_string().contains("user_id"), "{err}");
}
