//! Names are data, never paths. Pipeline and stage names are restricted to a safe alphabet, and
//! sweep values become directory names through an encoding that cannot leave the output
//! directory: readable where the value is already safe, hashed where it is not.

/// The longest pipeline or stage name.
pub const MAX_NAME_LEN: usize = 64;
/// The longest sweep value kept readable in a member directory name.
const MAX_LABEL_LEN: usize = 48;
/// The longest member directory name (file systems allow 255 bytes).
const MAX_MEMBER_LEN: usize = 160;

/// The documented alphabet of pipeline and stage names: ASCII letters, digits, `_` and `-`,
/// starting with a letter, digit or `_`, at most 64 characters.
pub fn check_name(what: &str, s: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if s.is_empty() {
        return Err(format!("{what} name is empty; use letters, digits, `_` and `-`"));
    }
    if s.len() > MAX_NAME_LEN {
        return Err(format!("{what} name is {} characters long; at most {MAX_NAME_LEN} are allowed", s.len()));
    }
    if let Some(c) = s.chars().find(|&c| !ok_char(c)) {
        return Err(format!("{what} name `{}` contains {c:?}; names use only letters, digits, `_` and `-`", s.escape_debug()));
    }
    if s.starts_with('-') {
        return Err(format!("{what} name `{s}` starts with `-`; start with a letter, digit or `_`"));
    }
    Ok(())
}

/// A name that passes `check_name`, made from arbitrary text (the default pipeline name comes
/// from the file name, which the user did not choose as a name).
pub fn sanitize_name(s: &str) -> String {
    let mut out: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).take(MAX_NAME_LEN).collect();
    if out.is_empty() || out.starts_with('-') {
        out.insert(0, '_');
        out.truncate(MAX_NAME_LEN);
    }
    out
}

fn short_hash(s: &str) -> String {
    crate::sha256_hex(s.as_bytes())[..10].to_string()
}

/// A sweep value as it appears in a member directory name. Short values without path
/// separators, control characters or a leading `.` stay as they are (`0.001`, `relu`,
/// `[30, 30]`); anything else keeps its harmless characters and gains a hash of the whole
/// value (`x~3f2a9c01de` for `../../x`), so no value can name a path and two different values
/// never share a directory (a collision with a literal value is reported at validation).
pub fn encode_label(value: &str) -> String {
    let safe = |c: char| !c.is_control() && !matches!(c, '/' | '\\' | '~');
    if !value.is_empty() && value.len() <= MAX_LABEL_LEN && value.chars().all(safe) && !value.starts_with('.') {
        return value.to_string();
    }
    let readable: String = value
        .chars()
        .filter(|&c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.'))
        .skip_while(|&c| c == '.')
        .take(24)
        .collect();
    format!("{readable}~{}", short_hash(value))
}

/// A member directory name from its `stage.param=label` parts (labels already encoded); very
/// long combinations are shortened to a prefix and a hash.
pub fn member_name(parts: &[String]) -> String {
    let name = parts.join("__");
    if name.len() <= MAX_MEMBER_LEN {
        return name;
    }
    let mut cut = MAX_MEMBER_LEN - 12;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{}", &name[..cut], short_hash(&name))
}

/// Is `name` a single, normal path component (no separators, not `.`/`..`, not empty)?
pub fn is_plain_component(name: &str) -> bool {
    let mut c = std::path::Path::new(name).components();
    matches!((c.next(), c.next()), (Some(std::path::Component::Normal(n)), None) if n == std::ffi::OsStr::new(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_rejected_and_ordinary_ones_kept() {
        for bad in ["", ".", "..", "../x", "/abs", "a/b", "a.b", "a\\b", "-x", "a b", "é", &"x".repeat(65)] {
            assert!(check_name("stage", bad).is_err(), "{bad:?} accepted");
        }
        for good in ["data", "train_2", "E3-width", "_x", "9"] {
            assert!(check_name("stage", good).is_ok(), "{good:?} rejected");
        }
        assert_eq!(sanitize_name("my pipeline.v2"), "my_pipeline_v2");
        assert_eq!(sanitize_name("-x"), "_-x");
    }

    #[test]
    fn labels_are_readable_when_safe_and_hashed_when_not() {
        for v in ["relu", "0.001", "-1", "1e-5", "true", "gd+momentum", "[30, 30]", "a b"] {
            assert_eq!(encode_label(v), v);
        }
        for v in ["../../../../x", "/etc", "a/b", "..", ".", "", "x\0y", "a\\b", ".hidden", &"y".repeat(49)] {
            let e = encode_label(v);
            assert!(is_plain_component(&e) && !e.starts_with('.') && e.contains('~'), "{v:?} -> {e:?}");
            assert!(!e.contains('/') && !e.contains('\\'), "{e}");
        }
        assert_ne!(encode_label("a/b"), encode_label("a\\b"));
        let long: Vec<String> = (0..20).map(|i| format!("stage.param{i}={}", "v".repeat(20))).collect();
        let m = member_name(&long);
        assert!(m.len() <= MAX_MEMBER_LEN && is_plain_component(&m));
    }
}
