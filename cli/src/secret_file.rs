//! Settings read from files, as containers mount secrets (`--database-url-file`,
//! `WAYBILL_DATABASE_URL_FILE`, `database_url_file` in the TOML file, and the same for the
//! broker URL).

use std::path::Path;

/// The value of `setting` from the file at `path`, without the trailing line break(s) editors
/// and `echo` add.
///
/// # Errors
/// A message naming the setting and the path (never the contents) when the file cannot be
/// read or holds nothing but whitespace.
pub fn read_secret(setting: &str, path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {setting} from {}: {e}", path.display()))?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.trim().is_empty() {
        return Err(format!("{setting} file {} is empty", path.display()));
    }
    Ok(value.to_owned())
}

/// `direct`, or the contents of `file`; both given is an error, since either could be the
/// one meant.
///
/// # Errors
/// Both set, or the file unreadable or empty (see [`read_secret`]).
pub fn direct_or_file(
    setting: &str,
    direct: Option<String>,
    file: Option<&Path>,
) -> Result<Option<String>, String> {
    match (direct, file) {
        (Some(_), Some(_)) => Err(format!(
            "both {setting} and {setting}_file are set: give one of them"
        )),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => read_secret(setting, path).map(Some),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("waybill-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_trailing_line_break_is_trimmed_and_nothing_else() {
        let path = file_with("url", "postgres://a:b c@h/d \r\n\n");
        assert_eq!(
            read_secret("database_url", &path).unwrap(),
            "postgres://a:b c@h/d "
        );
    }

    #[test]
    fn a_missing_or_empty_file_is_an_error_naming_setting_and_path() {
        let missing = std::env::temp_dir().join("waybill-no-such-secret");
        let err = read_secret("broker_url", &missing).unwrap_err();
        assert!(
            err.contains("broker_url") && err.contains("waybill-no-such-secret"),
            "{err}"
        );
        let empty = file_with("empty", "\n");
        assert!(read_secret("broker_url", &empty)
            .unwrap_err()
            .contains("empty"));
    }

    #[test]
    fn both_a_value_and_a_file_are_refused() {
        let path = file_with("both", "x");
        let err = direct_or_file("database_url", Some("y".into()), Some(&path)).unwrap_err();
        assert!(err.contains("database_url_file"), "{err}");
        assert_eq!(
            direct_or_file("database_url", None, Some(&path)).unwrap(),
            Some("x".into())
        );
    }
}
