//! The Dockerfile's runtime stage: what the image runs, as whom, and which ports it exposes.

use std::collections::BTreeSet;
use std::path::Path;

use crate::repo;

#[derive(Debug, Clone, Default)]
pub(crate) struct Image {
    /// The last `FROM`: the image that runs.
    pub(crate) base: String,
    pub(crate) user: Option<String>,
    pub(crate) exposed: BTreeSet<u16>,
    pub(crate) entrypoint: Vec<String>,
}

impl Image {
    pub(crate) fn load(path: &Path) -> Image {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Instructions, with continuation lines joined and comments dropped.
        let mut lines = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
                continue;
            }
            match t.strip_suffix('\\') {
                Some(head) => current.push_str(head),
                None => {
                    current.push_str(t);
                    lines.push(std::mem::take(&mut current));
                }
            }
        }
        let mut image = Image::default();
        for line in lines {
            let (op, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
            let rest = rest.trim();
            match op.to_ascii_uppercase().as_str() {
                "FROM" => {
                    image = Image {
                        base: rest.split_whitespace().next().unwrap_or("").to_string(),
                        ..Image::default()
                    }
                }
                "USER" => image.user = Some(rest.to_string()),
                "EXPOSE" => image.exposed.extend(
                    rest.split_whitespace().filter_map(|p| p.trim_end_matches("/tcp").parse::<u16>().ok()),
                ),
                "ENTRYPOINT" => {
                    image.entrypoint = serde_json::from_str(rest).unwrap_or_else(|e| {
                        panic!("{}: ENTRYPOINT {rest} is not an exec-form JSON array: {e}", path.display())
                    })
                }
                _ => {}
            }
        }
        image
    }

    /// The numeric user id of `USER uid[:gid]`.
    pub(crate) fn uid(&self) -> Option<u32> {
        self.user.as_deref()?.split(':').next()?.parse().ok()
    }
}

#[test]
fn runs_promtier_as_a_non_root_user() {
    let image = Image::load(&repo().join("Dockerfile"));
    assert_eq!(image.entrypoint.first().and_then(|p| p.rsplit('/').next()), Some("promtier"), "{image:?}");
    assert!(image.uid().is_some_and(|uid| uid != 0), "USER must be a numeric non-root uid: {image:?}");
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    assert!(
        ignore.lines().any(|l| l.trim().trim_matches('/') == "target"),
        ".dockerignore must leave out target/"
    );
}
