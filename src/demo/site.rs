//! The demo test site: an `index.html` with a grid of 272 thumbnails.
//!
//! It recreates the original project's test page: load it through the proxy
//! once to see every image miss the cache, reload it to see them hit. The
//! whole site is generated in memory and is byte-for-byte the same on every
//! run, so ETags and sizes are stable too.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::Path;

use bytes::Bytes;

use super::images::{self, SplitMix64};

/// Number of images on the test page.
pub const IMAGE_COUNT: usize = 272;
/// Every `GIF_EVERY`-th image is a GIF, the rest are JPEGs.
pub const GIF_EVERY: usize = 3;

const SITE_SEED: u64 = 0x6874_7470_6361_6368; // "httpcach"

/// One file of the site.
#[derive(Clone)]
pub struct SiteFile {
    /// The `Content-Type` to serve it with.
    pub content_type: &'static str,
    /// The file's bytes.
    pub body: Bytes,
    /// A strong entity tag, quotes included, derived from a hash of `body`.
    pub etag: String,
}

impl fmt::Debug for SiteFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiteFile")
            .field("content_type", &self.content_type)
            .field("len", &self.body.len())
            .field("etag", &self.etag)
            .finish()
    }
}

/// The generated site, keyed by URL path (`/index.html`, `/images/...`).
#[derive(Clone, Debug)]
pub struct Site {
    files: BTreeMap<String, SiteFile>,
}

/// What one `<img>` on the page looks like.
struct ImageSpec {
    number: usize,
    gif: bool,
    w: u16,
    h: u16,
}

impl ImageSpec {
    fn rel_path(&self) -> String {
        let ext = if self.gif { "gif" } else { "jpg" };
        format!("images/img-{:03}.{ext}", self.number)
    }

    fn render(&self) -> Vec<u8> {
        if self.gif {
            images::gif(self.number, self.w, self.h)
        } else {
            images::jpeg(self.number, self.w, self.h)
        }
    }
}

impl Site {
    /// Generates the whole site: `index.html` plus [`IMAGE_COUNT`] images.
    ///
    /// Deterministic; images are drawn on a few threads to keep it quick.
    pub fn generate() -> Site {
        let mut rng = SplitMix64::new(SITE_SEED);
        let specs: Vec<ImageSpec> = (1..=IMAGE_COUNT)
            .map(|number| {
                let gif = number % GIF_EVERY == 0;
                let (lo, hi) = if gif { (64, 128) } else { (80, 160) };
                let w = rng.range(lo, hi) as u16;
                let h = rng.range(lo, hi) as u16;
                ImageSpec { number, gif, w, h }
            })
            .collect();

        let bodies = render_all(&specs);
        let mut files = BTreeMap::new();
        for (spec, body) in specs.iter().zip(bodies) {
            let content_type = if spec.gif { "image/gif" } else { "image/jpeg" };
            files.insert(format!("/{}", spec.rel_path()), file(content_type, body));
        }
        let html = index_html(&specs);
        files.insert("/index.html".to_string(), file("text/html; charset=utf-8", html.into_bytes()));
        Site { files }
    }

    /// Looks up a URL path; `/` (or an empty path) means `/index.html`. A
    /// query string or fragment is ignored and the leading `/` is optional.
    pub fn get(&self, path: &str) -> Option<&SiteFile> {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        match path {
            "" | "/" => self.files.get("/index.html"),
            p if p.starts_with('/') => self.files.get(p),
            p => self.files.get(&format!("/{p}")),
        }
    }

    /// All URL paths of the site, sorted, each starting with `/`.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// Number of image files.
    pub fn image_count(&self) -> usize {
        self.files.values().filter(|f| f.content_type.starts_with("image/")).count()
    }

    /// Total size of all files' bodies, in bytes.
    pub fn total_bytes(&self) -> usize {
        self.files.values().map(|f| f.body.len()).sum()
    }

    /// Writes the site under `dir` (`dir/index.html`, `dir/images/...`),
    /// creating directories as needed and overwriting existing files.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        for (path, file) in &self.files {
            let target = dir.join(path.trim_start_matches('/'));
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&target, &file.body)?;
        }
        Ok(())
    }
}

fn file(content_type: &'static str, body: Vec<u8>) -> SiteFile {
    let etag = format!("\"{:016x}-{:x}\"", fnv1a64(&body), body.len());
    SiteFile { content_type, body: Bytes::from(body), etag }
}

/// 64-bit FNV-1a: plenty for telling the site's files apart.
fn fnv1a64(data: &[u8]) -> u64 {
    data.iter()
        .fold(0xCBF2_9CE4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3))
}

/// Renders every image, spread over the available cores. Each image depends
/// only on its own spec, so the result does not depend on the thread count.
fn render_all(specs: &[ImageSpec]) -> Vec<Vec<u8>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    let chunk = specs.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = specs
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(ImageSpec::render).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("image rendering panicked")).collect()
    })
}

fn index_html(specs: &[ImageSpec]) -> String {
    let gifs = specs.iter().filter(|s| s.gif).count();
    let jpegs = specs.len() - gifs;
    let count = specs.len();
    let mut html = String::with_capacity(120 * count + 2048);
    html.push_str(&format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>httpcache-proxy test page — {count} images</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; background: #f5f5f2; color: #222; }}
p {{ max-width: 48em; line-height: 1.4; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 6px; align-items: flex-end; }}
.grid img {{ display: block; background: #ddd; }}
</style>
</head>
<body>
<h1>httpcache-proxy test page — {count} images</h1>
<p>This page holds {count} images ({jpegs} JPEG, {gifs} GIF), each a separate request.
Load it through the proxy and watch the proxy's log or statistics: on the first load
every image is a cache miss fetched from the origin. Then reload the page (a plain
reload, not a forced one, which would bypass caches) and the images come back as
cache hits.</p>
<div class="grid">
"#
    ));
    for spec in specs {
        let kind = if spec.gif { "GIF" } else { "JPEG" };
        // Writing to a String cannot fail.
        let _ = writeln!(
            html,
            r#"<img src="{}" width="{}" height="{}" alt="Image {} of {count} ({kind}, {}×{})">"#,
            spec.rel_path(),
            spec.w,
            spec.h,
            spec.number,
            spec.w,
            spec.h,
        );
    }
    html.push_str("</div>\n</body>\n</html>\n");
    html
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// One site shared by the tests of this module and `origin`.
    pub(in super::super) fn shared_site() -> &'static Site {
        static SITE: OnceLock<Site> = OnceLock::new();
        SITE.get_or_init(Site::generate)
    }

    fn img_srcs(html: &str) -> Vec<&str> {
        html.split("<img src=\"")
            .skip(1)
            .map(|rest| &rest[..rest.find('"').expect("closing quote")])
            .collect()
    }

    #[test]
    fn has_272_images_of_both_kinds() {
        let site = shared_site();
        assert_eq!(site.image_count(), IMAGE_COUNT);
        assert_eq!(site.paths().count(), IMAGE_COUNT + 1);
        let count = |ct: &str| site.paths().filter(|p| site.get(p).unwrap().content_type == ct).count();
        assert_eq!(count("image/gif"), IMAGE_COUNT / GIF_EVERY);
        assert_eq!(count("image/jpeg"), IMAGE_COUNT - IMAGE_COUNT / GIF_EVERY);
        assert!(site.get("/index.html").is_some());
    }

    #[test]
    fn jpegs_are_well_formed_and_sized() {
        let site = shared_site();
        for path in site.paths().filter(|p| p.ends_with(".jpg")) {
            let f = site.get(path).unwrap();
            assert_eq!(f.content_type, "image/jpeg");
            assert_eq!(&f.body[..2], &[0xFF, 0xD8], "{path}");
            assert_eq!(&f.body[f.body.len() - 2..], &[0xFF, 0xD9], "{path}");
            assert!((1_000..=40_000).contains(&f.body.len()), "{path}: {}", f.body.len());
        }
    }

    #[test]
    fn gifs_decode_to_the_size_in_the_page() {
        let site = shared_site();
        let html = std::str::from_utf8(&site.get("/").unwrap().body).unwrap().to_owned();
        for path in site.paths().filter(|p| p.ends_with(".gif")) {
            let f = site.get(path).unwrap();
            assert_eq!(f.content_type, "image/gif");
            assert_eq!(&f.body[..6], b"GIF89a", "{path}");
            let mut decoder = gif::DecodeOptions::new().read_info(&f.body[..]).unwrap();
            let (w, h) = (decoder.width(), decoder.height());
            assert!((64..=128).contains(&w) && (64..=128).contains(&h), "{path}");
            while let Some(frame) = decoder.read_next_frame().unwrap() {
                assert_eq!((frame.width, frame.height), (w, h));
            }
            let tag = format!(r#"<img src="{}" width="{w}" height="{h}""#, &path[1..]);
            assert!(html.contains(&tag), "{tag}");
        }
    }

    #[test]
    fn generation_is_deterministic() {
        let a = shared_site();
        let b = Site::generate();
        assert!(a.paths().eq(b.paths()));
        for path in a.paths() {
            let (fa, fb) = (a.get(path).unwrap(), b.get(path).unwrap());
            assert_eq!(fa.body, fb.body, "{path}");
            assert_eq!(fa.etag, fb.etag, "{path}");
        }
    }

    #[test]
    fn index_references_exactly_the_images() {
        let site = shared_site();
        let index = site.get("/").unwrap();
        assert_eq!(index.content_type, "text/html; charset=utf-8");
        let html = std::str::from_utf8(&index.body).unwrap();
        assert!(html.contains("<title>httpcache-proxy test page — 272 images</title>"));
        let srcs = img_srcs(html);
        assert_eq!(srcs.len(), IMAGE_COUNT);
        assert_eq!(srcs[0], "images/img-001.jpg");
        assert_eq!(srcs[2], "images/img-003.gif");
        let mut from_html: Vec<String> = srcs.iter().map(|s| format!("/{s}")).collect();
        from_html.sort();
        let images: Vec<&str> = site.paths().filter(|p| p.starts_with("/images/")).collect();
        assert_eq!(from_html, images);
    }

    #[test]
    fn lookup_rules_and_etags() {
        let site = shared_site();
        let index = site.get("/index.html").unwrap();
        assert!(std::ptr::eq(site.get("/").unwrap(), index));
        assert!(std::ptr::eq(site.get("/?x=1").unwrap(), index));
        assert!(std::ptr::eq(site.get("index.html").unwrap(), index));
        assert!(site.get("/images/img-999.jpg").is_none());
        assert!(site.get("/images/").is_none());
        let mut etags: Vec<&str> = site.paths().map(|p| site.get(p).unwrap().etag.as_str()).collect();
        assert!(etags.iter().all(|e| e.starts_with('"') && e.ends_with('"') && e.len() > 2));
        etags.sort_unstable();
        etags.dedup();
        assert_eq!(etags.len(), IMAGE_COUNT + 1, "etags are unique");
    }

    #[test]
    fn write_to_writes_every_file() {
        let site = shared_site();
        let dir = std::env::temp_dir().join(format!("demo-site-test-{}", std::process::id()));
        site.write_to(&dir).unwrap();
        for path in site.paths() {
            let on_disk = std::fs::read(dir.join(&path[1..])).unwrap();
            assert_eq!(on_disk, site.get(path).unwrap().body, "{path}");
        }
        assert!(dir.join("images/img-272.jpg").is_file());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
