//! The dashboard: the page and its assets (`crates/tally-server/web/`, HTML, CSS and plain
//! JavaScript, no build step), embedded in the binary by `rust-embed-for-web` with a gzip copy
//! and an ETag computed at build time; and the map layer (GeoJSON) given to `tally serve --geo`,
//! matched to the registry's areas here and compressed once when the server starts.
//!
//! `/` and the deep links `/r/{round}/a/{area path}` answer the page; `/assets/...` its files.
//! Every answer carries an ETag and is answered `304` to a matching `If-None-Match`, gzip when
//! the client accepts it.

#[allow(unused_imports)] // named only by the #[utoipa::path] attribute of `get_geo`
use crate::wire::ErrorBody;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use rust_embed_for_web::{EmbedableFile, RustEmbed};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::OnceLock;
use tally_store::Registry;

#[derive(RustEmbed)]
#[folder = "web/"]
#[br = false]
struct Assets;

/// Every file of the page, as `(path, bytes)` (for `tally site`, which writes them to a folder).
pub fn files() -> Vec<(String, Vec<u8>)> {
    [
        "index.html",
        "assets/app.js",
        "assets/i18n.js",
        "assets/style.css",
    ]
    .iter()
    .filter_map(|p| Assets::get(p).map(|f| (p.to_string(), f.data().to_vec())))
    .collect()
}

/// One answer body with its validators, ready to serve.
pub struct Blob {
    pub bytes: Vec<u8>,
    pub gzip: Option<Vec<u8>>,
    pub etag: String,
    pub mime: &'static str,
}

fn gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).ok()?;
    let out = enc.finish().ok()?;
    (out.len() < bytes.len()).then_some(out)
}

fn etag_of(bytes: &[u8]) -> String {
    // FNV-1a over the bytes: a validator, not a security property.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("\"{h:016x}-{}\"", bytes.len())
}

impl Blob {
    pub fn new(bytes: Vec<u8>, mime: &'static str) -> Blob {
        Blob {
            gzip: gzip(&bytes),
            etag: etag_of(&bytes),
            bytes,
            mime,
        }
    }
}

/// The page as the server answers it: the embedded `index.html` with `<base href="/">`, so its
/// relative asset paths hold under deep links (the static site keeps the file as it is).
fn served_index() -> Option<&'static Blob> {
    static INDEX: OnceLock<Option<Blob>> = OnceLock::new();
    INDEX
        .get_or_init(|| {
            let f = Assets::get("index.html")?;
            let text = String::from_utf8_lossy(f.data()).replace(
                "<!--base-->",
                "<base href=\"/\"><meta name=\"tally-mode\" content=\"live\">",
            );
            Some(Blob::new(text.into_bytes(), "text/html; charset=utf-8"))
        })
        .as_ref()
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.split(';');
            let name = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !q_zero
        })
}

fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == etag
        })
}

/// Answers `body` with ETag, `304` for a matching `If-None-Match`, gzip when accepted.
pub fn respond(
    headers: &HeaderMap,
    etag: &str,
    mime: &str,
    plain: &[u8],
    gzipped: Option<&[u8]>,
) -> Response {
    let mut r = if none_match(headers, etag) {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        match gzipped.filter(|_| accepts_gzip(headers)) {
            Some(gz) => {
                let mut r = Response::new(Body::from(gz.to_vec()));
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            }
            None => Response::new(Body::from(plain.to_vec())),
        }
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    // Revalidate every time: a new binary's page is seen at once, an unchanged one costs a 304.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn blob_response(headers: &HeaderMap, b: &Blob) -> Response {
    respond(headers, &b.etag, b.mime, &b.bytes, b.gzip.as_deref())
}

/// A coded 404 like the API's (`{"code", "message"}`).
fn not_found(message: &str) -> Response {
    let body = json!({ "code": "H404", "message": message }).to_string();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `/` and `/r/...`: the page.
pub(crate) async fn get_page(headers: HeaderMap) -> Response {
    match served_index() {
        Some(b) => blob_response(&headers, b),
        None => not_found("no such page"),
    }
}

/// `/assets/{file}`: one embedded file.
pub(crate) async fn get_asset(headers: HeaderMap, uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let Some(f) = Assets::get(path) else {
        return not_found("no such file");
    };
    let mime = f.mime_type().unwrap_or("application/octet-stream");
    let mime = match mime {
        m if m.starts_with("text/") || m == "application/javascript" => {
            format!("{m}; charset=utf-8")
        }
        m => m.to_string(),
    };
    respond(
        &headers,
        f.etag(),
        &mime,
        f.data(),
        f.data_gzip().as_ref().map(|d| d.as_ref()),
    )
}

/// `GET /api/v1/geo`: the map layer, or 404 H404 when the server has none.
pub(crate) fn geo_response(geo: Option<&Geo>, headers: &HeaderMap) -> Response {
    match geo {
        Some(g) => blob_response(headers, &g.blob),
        None => not_found("this server has no map (tally serve --geo FILE --geo-key PROPERTY)"),
    }
}

/// Why a GeoJSON file cannot be used.
#[derive(Debug)]
pub enum GeoError {
    NotJson(String),
    NotCollection,
    NothingMatched { key: String, seen: String },
}

impl std::fmt::Display for GeoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GeoError::NotJson(e) => write!(f, "the map is not JSON: {e}"),
            GeoError::NotCollection => write!(
                f,
                "the map is not a GeoJSON FeatureCollection (no \"features\" array)"
            ),
            GeoError::NothingMatched { key, seen } => write!(
                f,
                "no feature's property '{key}' names an area of the election (first values: {seen})"
            ),
        }
    }
}

impl std::error::Error for GeoError {}

/// A map layer matched to the areas of one level of the registry.
pub struct Geo {
    /// The level whose areas the features matched (the one with most matches).
    pub level: String,
    pub key: String,
    /// Features matched to an area.
    pub matched: usize,
    /// Values of `key` that name no area (their features are left out of the map).
    pub unmatched_features: Vec<String>,
    /// Areas of the level that no feature names (shown in the table only).
    pub unmatched_areas: Vec<String>,
    /// The GeoJSON served: matched features with `properties.area` (the area's path) and the
    /// coordinates rounded to 3 decimals (about 100 m).
    pub blob: Blob,
}

/// Names compared without case, accents or Turkish dotted/dotless i differences.
fn fold(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    s.trim()
        .chars()
        .map(|c| match c {
            'ı' | 'İ' | 'I' => 'i',
            c => c,
        })
        .nfd()
        .filter(|c| !('\u{300}'..='\u{36f}').contains(c))
        .flat_map(char::to_lowercase)
        .collect()
}

fn round_coords(v: &mut Value) {
    match v {
        Value::Array(a) => {
            if a.len() >= 2 && a.iter().all(Value::is_number) {
                for x in a.iter_mut() {
                    if let Some(f) = x.as_f64() {
                        *x = json!((f * 1000.0).round() / 1000.0);
                    }
                }
            } else {
                for x in a.iter_mut() {
                    round_coords(x);
                }
                // Drop repeated points that rounding made (rings keep at least 4 points).
                if a.len() > 4 && a.iter().all(|p| p.as_array().is_some_and(|p| p.len() >= 2)) {
                    a.dedup();
                }
            }
        }
        Value::Object(o) => o.values_mut().for_each(round_coords),
        _ => {}
    }
}

impl Geo {
    /// Reads a GeoJSON FeatureCollection and matches each feature's `key` property (text or
    /// number) to the names of the areas of each level of the registry; the level with most
    /// matches wins.
    pub fn new(bytes: &[u8], key: &str, registry: &Registry) -> Result<Geo, GeoError> {
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| GeoError::NotJson(e.to_string()))?;
        let features = doc
            .get("features")
            .and_then(Value::as_array)
            .ok_or(GeoError::NotCollection)?;
        let value_of = |f: &Value| -> Option<String> {
            match f.get("properties")?.get(key)? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let levels: Vec<String> = registry
            .rounds
            .first()
            .map(|r| r.levels.clone())
            .unwrap_or_default();
        // Per level: folded area name -> area path.
        let mut by_level: Vec<BTreeMap<String, String>> = vec![BTreeMap::new(); levels.len()];
        for s in &registry.stations {
            for (d, map) in by_level.iter_mut().enumerate() {
                if d < s.area.len() {
                    map.entry(fold(&s.area[d]))
                        .or_insert_with(|| s.area[..=d].join("/"));
                }
            }
        }
        let values: Vec<Option<String>> = features.iter().map(value_of).collect();
        let best = (0..levels.len())
            .map(|d| {
                let n = values
                    .iter()
                    .flatten()
                    .filter(|v| by_level[d].contains_key(&fold(v)))
                    .count();
                (n, d)
            })
            .max_by_key(|&(n, d)| (n, std::cmp::Reverse(d)));
        let Some((n, depth)) = best.filter(|&(n, _)| n > 0) else {
            return Err(GeoError::NothingMatched {
                key: key.to_string(),
                seen: values
                    .iter()
                    .flatten()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let names = &by_level[depth];
        let mut out = Vec::with_capacity(n);
        let mut unmatched_features = Vec::new();
        let mut seen: HashMap<&str, ()> = HashMap::new();
        for (f, v) in features.iter().zip(&values) {
            let area = v.as_ref().and_then(|v| names.get(&fold(v)));
            match area {
                Some(area) => {
                    seen.insert(area.as_str(), ());
                    let mut geometry = f.get("geometry").cloned().unwrap_or(Value::Null);
                    round_coords(&mut geometry);
                    out.push(json!({
                        "type": "Feature",
                        "properties": { "area": area },
                        "geometry": geometry,
                    }));
                }
                None => unmatched_features.push(
                    v.clone()
                        .unwrap_or_else(|| format!("(a feature without '{key}')")),
                ),
            }
        }
        let unmatched_areas = names
            .values()
            .filter(|a| !seen.contains_key(a.as_str()))
            .cloned()
            .collect();
        let served = json!({ "type": "FeatureCollection", "features": out });
        let bytes = serde_json::to_vec(&served).unwrap_or_default();
        Ok(Geo {
            level: levels[depth].clone(),
            key: key.to_string(),
            matched: n,
            unmatched_features,
            unmatched_areas,
            blob: Blob::new(bytes, "application/geo+json"),
        })
    }
}

impl Geo {
    /// What `/api/v1/election` says of this layer.
    pub fn info(&self) -> crate::wire::GeoInfo {
        crate::wire::GeoInfo {
            level: self.level.clone(),
            key: self.key.clone(),
            features: self.matched,
            unmatched_areas: self.unmatched_areas.clone(),
        }
    }
}

/// The map layer: a GeoJSON FeatureCollection whose features carry `properties.area`.
#[utoipa::path(
    get,
    path = "/geo",
    responses(
        (status = 200, description = "GeoJSON FeatureCollection (application/geo+json)"),
        (status = 404, description = "No such station, area, user or route (H404)", body = ErrorBody)
    )
)]
#[allow(dead_code)] // documents the route served by `geo_response`
pub(crate) async fn get_geo() {}
