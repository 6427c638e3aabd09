//! MLflow's input rules, with MLflow's messages, checked before anything reaches the store.

use crate::error::{Error, Result};

pub const MAX_ENTITY_KEY_LENGTH: usize = 250;
pub const MAX_PARAM_VAL_LENGTH: usize = 6000;
pub const MAX_TAG_VAL_LENGTH: usize = 8000;
pub const MAX_EXPERIMENT_NAME_LENGTH: usize = 500;
pub const MAX_EXPERIMENT_TAG_VAL_LENGTH: usize = 20000;
pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_PARAMS_TAGS_PER_BATCH: usize = 100;
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;

const BAD_CHARACTERS: &str = "Names may only contain alphanumerics, underscores (_), dashes (-), \
periods (.), spaces ( ), colon(:) and slashes (/).";

/// What kind of name is checked: MLflow words its messages differently for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Metric,
    Param,
    Tag,
}

impl KeyKind {
    fn length_label(self) -> &'static str {
        match self {
            KeyKind::Metric => "Metric name",
            KeyKind::Param => "Param key",
            KeyKind::Tag => "key",
        }
    }
}

/// `json.dumps(s)` as Python writes it (ASCII only), because MLflow quotes values that way.
pub fn json_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Python's `repr()` of a str, as MLflow prints names and values with `!r`. (Python also
/// escapes the few non-printable characters beyond ASCII's; names rarely hold them.)
pub fn python_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

pub fn missing_value_message(path: &str) -> String {
    format!("Missing value for required parameter '{path}'.")
}

/// What MLflow says of a param or tag given `None` as its key.
pub fn missing_key(kind: KeyKind, path: &str) -> Error {
    match kind {
        KeyKind::Tag => Error::invalid(missing_value_message(path)),
        KeyKind::Param | KeyKind::Metric => Error::invalid(invalid_value_message(
            path,
            "\"\"",
            "A key name must be provided.",
        )),
    }
}

pub fn invalid_value_message(path: &str, formatted_value: &str, message: &str) -> String {
    if message.is_empty() {
        format!("Invalid value {formatted_value} for parameter '{path}' supplied.")
    } else {
        format!("Invalid value {formatted_value} for parameter '{path}' supplied: {message}")
    }
}

/// `posixpath.normpath`, which MLflow uses to refuse names that alias other names as files.
pub fn posix_normpath(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let leading = if path.starts_with("//") && !path.starts_with("///") {
        2
    } else if path.starts_with('/') {
        1
    } else {
        0
    };
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        if comp.is_empty() || comp == "." {
            continue;
        }
        if comp != ".." || (leading == 0 && parts.is_empty()) || parts.last() == Some(&"..") {
            parts.push(comp);
        } else if !parts.is_empty() {
            parts.pop();
        }
    }
    let joined = parts.join("/");
    let out = format!("{}{}", "/".repeat(leading), joined);
    if out.is_empty() {
        ".".to_string()
    } else {
        out
    }
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '/' | '.' | '-' | ' ' | ':')
}

fn path_not_unique(name: &str) -> bool {
    let norm = posix_normpath(name);
    norm != name || norm == "." || norm.starts_with("..") || norm.starts_with('/')
}

/// Checks a metric, param or tag key as MLflow does, including its length.
pub fn validate_key(kind: KeyKind, key: &str, path: &str) -> Result<()> {
    validate_key_name(key, path)?;
    validate_key_length(kind, key, path)
}

/// The characters and the path rule of a key; MLflow checks a metric's other fields
/// before the length of its name.
pub fn validate_key_name(key: &str, path: &str) -> Result<()> {
    if !key.chars().all(is_name_char) {
        return Err(Error::invalid(invalid_value_message(
            path,
            &json_quote(key),
            BAD_CHARACTERS,
        )));
    }
    if path_not_unique(key) {
        let message = format!(
            "Names may be treated as files in certain cases, and must not resolve to other names \
             when treated as such. This name would resolve to {}",
            python_repr(&posix_normpath(key))
        );
        return Err(Error::invalid(invalid_value_message(
            path,
            &json_quote(key),
            &message,
        )));
    }
    Ok(())
}

pub fn validate_key_length(kind: KeyKind, key: &str, path: &str) -> Result<()> {
    let label = match (kind, path) {
        (KeyKind::Tag, p) if p != "key" => p,
        _ => kind.length_label(),
    };
    check_length(label, MAX_ENTITY_KEY_LENGTH, key)
}

pub fn exceeds_maximum_length(label: &str, limit: usize) -> String {
    format!("'{label}' exceeds the maximum length of {limit} characters")
}

fn check_length(label: &str, limit: usize, value: &str) -> Result<()> {
    if value.chars().count() > limit {
        return Err(Error::invalid(exceeds_maximum_length(label, limit)));
    }
    Ok(())
}

/// A value that may be over its limit. MLflow truncates it (with a warning) while
/// `MLFLOW_TRUNCATE_LONG_VALUES` is on, and refuses it otherwise.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    Fits,
    Truncated { warning: String, value: String },
}

pub fn check_truncatable(
    label: &str,
    limit: usize,
    value: &str,
    truncate: bool,
) -> Result<Checked> {
    let len = value.chars().count();
    if len <= limit {
        return Ok(Checked::Fits);
    }
    if !truncate {
        return Err(Error::invalid(exceeds_maximum_length(label, limit)));
    }
    let head: String = value.chars().take(100).collect();
    Ok(Checked::Truncated {
        warning: format!(
            "{label} '{head}...' ({len} characters) is truncated to {limit} characters to meet \
             the length limit."
        ),
        value: value.chars().take(limit).collect(),
    })
}

pub fn validate_param_value(value: &str, truncate: bool) -> Result<Checked> {
    check_truncatable("Param value", MAX_PARAM_VAL_LENGTH, value, truncate)
}

/// `path` is where MLflow says the value sits: `value`, or `tags[3].value` in a batch.
pub fn validate_tag_value(value: &str, path: &str, truncate: bool) -> Result<Checked> {
    check_truncatable(path, MAX_TAG_VAL_LENGTH, value, truncate)
}

pub fn validate_experiment_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(format!("Invalid experiment name: '{name}'")));
    }
    check_length("name", MAX_EXPERIMENT_NAME_LENGTH, name)
}

pub fn validate_experiment_tag(key: &str, value: Option<&str>) -> Result<()> {
    validate_key(KeyKind::Tag, key, "key")?;
    match value {
        Some(value) => check_length("value", MAX_EXPERIMENT_TAG_VAL_LENGTH, value),
        None => Ok(()),
    }
}

/// MLflow's run id rule: an alphanumeric, then up to 255 word characters or dashes. The
/// rule is a Python regex ending in `$`, which also matches before a final newline.
pub fn validate_run_id(run_id: &str) -> Result<()> {
    let id = run_id.strip_suffix('\n').unwrap_or(run_id);
    let mut chars = id.chars();
    let ok = match chars.next() {
        Some(first) if first.is_ascii_alphanumeric() => {
            id.chars().count() <= 256 && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(invalid_value_message(
            "run_id",
            &json_quote(run_id),
            "",
        )))
    }
}

pub fn parse_experiment_id(experiment_id: &str) -> Result<i64> {
    experiment_id.trim().parse::<i64>().map_err(|_| {
        Error::invalid(format!(
            "Invalid experiment ID '{experiment_id}'. Experiment ID must be a valid integer."
        ))
    })
}

fn check_batch_limit(entity: &str, limit: usize, length: usize) -> Result<()> {
    if length > limit {
        return Err(Error::invalid(format!(
            "A batch logging request can contain at most {limit} {entity}. Got {length} {entity}. \
             Please split up {entity} across multiple requests and try again."
        )));
    }
    Ok(())
}

pub fn validate_batch_limits(metrics: usize, params: usize, tags: usize) -> Result<()> {
    check_batch_limit("metrics", MAX_METRICS_PER_BATCH, metrics)?;
    check_batch_limit("params", MAX_PARAMS_TAGS_PER_BATCH, params)?;
    check_batch_limit("tags", MAX_PARAMS_TAGS_PER_BATCH, tags)?;
    check_batch_limit(
        "metrics, params, and tags",
        MAX_ENTITIES_PER_BATCH,
        metrics + params + tags,
    )
}

/// Python's `repr(list_of_str)`, as MLflow prints the duplicated keys.
pub fn validate_unique_param_keys<'a>(keys: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = rustc_hash::FxHashSet::default();
    let mut dupes = Vec::new();
    for key in keys {
        if !seen.insert(key) {
            dupes.push(python_repr(key));
        }
    }
    if dupes.is_empty() {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "Duplicate parameter keys have been submitted: [{}]. Please ensure the request contains \
         only one param value per param key.",
        dupes.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normpath_matches_python() {
        for (input, expected) in [
            ("", "."),
            ("a/b", "a/b"),
            ("a//b", "a/b"),
            ("a/./b", "a/b"),
            ("a/../b", "b"),
            ("../x", "../x"),
            ("/abs", "/abs"),
            ("//two", "//two"),
            ("///three", "/three"),
            ("a/", "a"),
            ("..", ".."),
            ("/..", "/"),
        ] {
            assert_eq!(posix_normpath(input), expected, "{input}");
        }
    }

    #[test]
    fn keys_follow_mlflow_rules() {
        assert!(validate_key(KeyKind::Metric, "train/loss: epoch-1.x", "name").is_ok());
        assert!(validate_key(KeyKind::Metric, "a!b", "name").is_err());
        assert!(validate_key(KeyKind::Metric, "../x", "name").is_err());
        assert!(validate_key(KeyKind::Metric, "/abs", "name").is_err());
        assert!(validate_key(KeyKind::Metric, "", "name").is_err());
        assert!(validate_key(KeyKind::Metric, &"k".repeat(250), "name").is_ok());
        let err = validate_key(KeyKind::Metric, &"k".repeat(251), "name").unwrap_err();
        assert_eq!(
            err.to_string(),
            "'Metric name' exceeds the maximum length of 250 characters"
        );
        let err = validate_key(KeyKind::Param, "a!b", "key").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid value \"a!b\" for parameter 'key' supplied: Names may only contain \
             alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colon(:) and \
             slashes (/)."
        );
    }

    #[test]
    fn repr_quotes_like_python() {
        assert_eq!(python_repr("a"), "'a'");
        assert_eq!(python_repr("it's"), "\"it's\"");
        assert_eq!(python_repr("'\""), "'\\'\"'");
        assert_eq!(python_repr("café\n\u{1}"), "'café\\n\\x01'");
    }

    #[test]
    fn json_quote_escapes_like_python() {
        assert_eq!(json_quote("a\"b"), "\"a\\\"b\"");
        assert_eq!(json_quote("é"), "\"\\u00e9\"");
        assert_eq!(json_quote("😀"), "\"\\ud83d\\ude00\"");
    }

    #[test]
    fn long_values_truncate_or_fail() {
        let long = "x".repeat(6001);
        assert!(validate_param_value(&long, false).is_err());
        match validate_param_value(&long, true).unwrap() {
            Checked::Truncated { value, .. } => assert_eq!(value.len(), 6000),
            Checked::Fits => panic!("should truncate"),
        }
    }

    #[test]
    fn batch_limits() {
        assert!(validate_batch_limits(1000, 0, 0).is_ok());
        assert!(validate_batch_limits(1001, 0, 0).is_err());
        assert!(validate_batch_limits(900, 100, 1).is_err());
        let err = validate_unique_param_keys(["a", "b", "a"].into_iter()).unwrap_err();
        assert!(err.to_string().contains("['a']"));
    }

    #[test]
    fn run_ids() {
        assert!(validate_run_id("0123456789abcdef0123456789abcdef").is_ok());
        assert!(validate_run_id("_bad").is_err());
        assert!(validate_run_id("").is_err());
        assert!(validate_run_id("abc\n").is_ok());
        assert!(validate_run_id("abc\n\n").is_err());
    }
}
