//! The stylesheet and script, embedded in the binary and served under a
//! name that holds a hash of their content, so browsers may cache them for
//! ever and still get a new version the moment it changes.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// One embedded file.
pub(crate) struct Asset {
    /// `app.<hash>.css`: what pages link to.
    pub name: String,
    content_type: &'static str,
    body: &'static [u8],
}

fn asset(stem: &str, extension: &str, content_type: &'static str, body: &'static [u8]) -> Asset {
    let digest = Sha256::digest(body);
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Asset {
        name: format!("{stem}.{hash}.{extension}"),
        content_type,
        body,
    }
}

pub(crate) static CSS: LazyLock<Asset> = LazyLock::new(|| {
    asset(
        "app",
        "css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    )
});

pub(crate) static JS: LazyLock<Asset> = LazyLock::new(|| {
    asset(
        "app",
        "js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    )
});

/// `GET /assets/{file}`.
pub(crate) async fn serve(Path(file): Path<String>) -> Result<Response, Error> {
    let asset = [&*CSS, &*JS]
        .into_iter()
        .find(|asset| asset.name == file)
        .ok_or_else(|| Error::NotFound(format!("no asset named {file}")))?;
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(response)
}
