// A parameter's type means what it means at the function, even when it is
// named like an item of the generated module (`Args`, `Job`) or written
// relative to the module (`self::..`, `super::..`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Args {
    pub n: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub title: String,
}

pub mod inner {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Point {
        pub x: i32,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Here(pub u8);

    /// `self::Here` is `inner::Here`, `super::Args` the top-level `Args`.
    #[jobq::job]
    pub async fn relative(
        here: self::Here,
        args: super::Args,
        points: Vec<self::Point>,
        job: Option<super::Job>,
    ) -> Result<(), std::io::Error> {
        let _ = (here, args, points, job);
        Ok(())
    }
}

/// The user's own `Args` and `Job`, also inside other types.
#[jobq::job]
pub async fn own_types(
    args: Args,
    job: Job,
    many: Vec<Args>,
    pair: (Job, Option<Args>),
) -> Result<(), std::io::Error> {
    let _ = (args, job, many, pair);
    Ok(())
}

fn main() {
    let a = own_types::Args {
        args: Args { n: 1 },
        job: Job {
            title: "t".to_owned(),
        },
        many: vec![Args { n: 2 }],
        pair: (
            Job {
                title: "u".to_owned(),
            },
            None,
        ),
    };
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(
        json,
        r#"{"args":{"n":1},"job":{"title":"t"},"many":[{"n":2}],"pair":[{"title":"u"},null]}"#
    );
    let back: own_types::Args = serde_json::from_str(&json).unwrap();
    assert_eq!(back.args, Args { n: 1 });

    // `Args` of the user's types is `Debug` and `Clone` like any other.
    let copy = back.clone();
    assert_eq!(copy.many, [Args { n: 2 }]);
    assert_eq!(
        format!("{copy:?}"),
        r#"Args { args: Args { n: 1 }, job: Job { title: "t" }, many: [Args { n: 2 }], pair: (Job { title: "u" }, None) }"#
    );

    let r = inner::relative::Args {
        here: inner::Here(7),
        args: Args { n: 3 },
        points: vec![inner::Point { x: 4 }],
        job: None,
    };
    let _: own_types::Job = own_types::Job;
    let _ = inner::relative::builder(r);
}
