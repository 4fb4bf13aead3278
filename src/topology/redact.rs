//! The topology text as `/api/v1/status/config` shows it: every secret replaced by `<secret>`
//! (and the password of a `url` by `xxxxx`), as Prometheus shows its configuration. The file is read as a generic YAML tree (key order
//! kept) and every value under a secret key is replaced, so a key added later is covered by its
//! name, not by remembering to redact it.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// What replaces a secret.
pub const SECRET: &str = "<secret>";

/// Keys whose value is a secret.
const SECRET_KEYS: &[&str] = &["password", "bearer_token", "credentials", "secret", "token"];
/// Keys whose every entry's value is a secret (user → bcrypt hash, header → value).
const SECRET_MAPS: &[&str] = &["basic_auth_users", "headers"];

#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
enum Yaml {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Yaml>),
    Map(IndexMap<String, Yaml>),
    Null(()),
}

/// `url` with the password of its user info (`http://user:pass@host/`) replaced by `xxxxx`, as
/// Go's `url.Redacted` shows it; anything that is not a URL is returned as it is.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("xxxxx"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// `text` with every secret replaced; an error message (never the text) if it is not YAML.
pub fn redact(text: &str) -> Result<String, String> {
    let mut doc: Yaml = serde_saphyr::from_str(text).map_err(|e| e.without_snippet().to_string())?;
    scrub(&mut doc);
    serde_saphyr::to_string(&doc).map_err(|e| e.to_string())
}

fn scrub(v: &mut Yaml) {
    match v {
        Yaml::Map(m) => {
            for (k, child) in m.iter_mut() {
                if SECRET_KEYS.contains(&k.as_str()) {
                    *child = Yaml::Str(SECRET.to_string());
                } else if k == "url"
                    && let Yaml::Str(u) = child
                {
                    // `remote_write`/`remote_read` URLs may carry a password.
                    *u = redact_url(u);
                } else if SECRET_MAPS.contains(&k.as_str()) {
                    if let Yaml::Map(entries) = child {
                        for e in entries.values_mut() {
                            *e = Yaml::Str(SECRET.to_string());
                        }
                    } else {
                        *child = Yaml::Str(SECRET.to_string());
                    }
                } else {
                    scrub(child);
                }
            }
        }
        Yaml::Seq(items) => items.iter_mut().for_each(scrub),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_and_the_rest_kept_in_order() {
        let text = "cluster: c\njobs:\n  - job_name: a\n    basic_auth: {username: u, password: hunter2}\n    bearer_token: tok123\ndefaults:\n  web:\n    basic_auth_users:\n      admin: $2y$10$abcdefghijklmnopqrstuv\n  client:\n    basic_auth:\n      username: g\n      password_file: /etc/pw\n";
        let out = redact(text).unwrap();
        for s in ["hunter2", "tok123", "$2y$10$abc"] {
            assert!(!out.contains(s), "{s} leaked:\n{out}");
        }
        assert!(out.contains("username: u"), "{out}");
        assert!(out.contains("admin: <secret>"), "{out}");
        assert!(out.contains("password_file: /etc/pw"), "{out}");
        assert!(out.find("cluster").unwrap() < out.find("defaults").unwrap(), "order kept:\n{out}");
    }

    #[test]
    fn remote_read_secrets_are_replaced() {
        let text = "globals:\n  - name: g\n    remote_read:\n      - url: http://old:9090/api/v1/read\n        headers: {X-Scope-OrgID: tenant-secret}\n        basic_auth: {username: r, password: pw-secret}\n      - url: http://r:url-secret@x/api/v1/read\n        bearer_token: tok-secret\n";
        let out = redact(text).unwrap();
        for s in ["tenant-secret", "pw-secret", "tok-secret", "url-secret"] {
            assert!(!out.contains(s), "{s} leaked:\n{out}");
        }
        assert!(out.contains("http://old:9090/api/v1/read"), "{out}");
        assert_eq!(redact_url("http://u:pw@h:1/api/v1/read"), "http://u:xxxxx@h:1/api/v1/read");
        assert_eq!(redact_url("http://h:1/api/v1/read"), "http://h:1/api/v1/read");
    }
}
