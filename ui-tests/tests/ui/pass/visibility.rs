// The generated module has the function's visibility, and its items are
// reachable from exactly where the function is: `pub`, `pub(crate)`,
// `pub(super)`, `pub(in path)` and private jobs, used from a sibling module.

mod jobs {
    #[jobq::job]
    pub async fn public_job(n: i32) -> Result<(), std::io::Error> {
        let _ = n;
        Ok(())
    }

    #[jobq::job]
    pub(crate) async fn crate_job(n: i32) -> Result<(), std::io::Error> {
        let _ = n;
        Ok(())
    }

    #[jobq::job]
    pub(super) async fn super_job(n: i32) -> Result<(), std::io::Error> {
        let _ = n;
        Ok(())
    }

    #[jobq::job]
    pub(in crate::jobs) async fn in_path_job(n: i32) -> Result<(), std::io::Error> {
        let _ = n;
        Ok(())
    }

    #[jobq::job]
    async fn private_job(n: i32) -> Result<(), std::io::Error> {
        let _ = n;
        Ok(())
    }

    pub mod nested {
        #[jobq::job]
        pub(super) async fn parent_only(n: i32) -> Result<(), std::io::Error> {
            let _ = n;
            Ok(())
        }
    }

    /// A private job and a `pub(super)` job of a child, used inside this module.
    pub fn local_uses() -> (&'static str, &'static str, &'static str) {
        let _ = private_job::Args { n: 1 };
        let _ = in_path_job::builder(in_path_job::Args { n: 2 });
        let _ = nested::parent_only::Args { n: 3 };
        (
            private_job::NAME,
            in_path_job::NAME,
            nested::parent_only::NAME,
        )
    }
}

mod sibling {
    use crate::jobs;

    pub fn uses() -> [&'static str; 3] {
        let _ = jobs::public_job::Args { n: 1 };
        let _ = jobs::crate_job::builder(jobs::crate_job::Args { n: 2 }).priority(1);
        let _ = jobs::super_job::Args { n: 3 };
        let _: jobs::public_job::Job = Default::default();
        [
            jobs::public_job::NAME,
            jobs::crate_job::QUEUE,
            jobs::super_job::NAME,
        ]
    }
}

fn main() {
    assert_eq!(sibling::uses(), ["public_job", "default", "super_job"]);
    assert_eq!(
        jobs::local_uses(),
        ("private_job", "in_path_job", "parent_only")
    );
}
