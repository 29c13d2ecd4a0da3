//! `${env:VAR}` expansion, the OpenTelemetry Collector way.
//!
//! Supported in any scalar, quoted or not: `${env:VAR}`, `${env:VAR:-default}` (default when
//! unset or empty), `${VAR}` (shorthand for `${env:VAR}`), `${file:/path}` (the file's contents
//! without a trailing newline — for secrets mounted as files), and `$$` for a literal `$`. A lone
//! `$` stays a literal `$`. An unset variable without a default is an error at its position.
//!
//! The substitution itself happens inside the YAML parser, on parsed scalars, so a value can
//! never change the file's structure. Here the text is only rewritten into the parser's syntax
//! (`${env:X}` → `${X}`); the column shifts this causes are recorded so every error still points
//! at the right column of the original file.

use std::collections::HashMap;

/// The configuration text rewritten for the parser, with its variables.
#[derive(Debug)]
pub(crate) struct Expansion {
    /// The rewritten text.
    pub text: String,
    /// Variables the parser substitutes: the environment plus file contents.
    pub vars: HashMap<String, String>,
    /// Problems found (unset variables, unreadable files): position and message.
    pub errors: Vec<((u64, u64), String)>,
    /// Per line, `(rewritten column, shift)` from which `shift` applies.
    shifts: Vec<Vec<(u64, i64)>>,
}

impl Expansion {
    /// The position in the original text of a position in the rewritten one.
    pub(crate) fn original(&self, (line, column): (u64, u64)) -> (u64, u64) {
        let shift = usize::try_from(line)
            .ok()
            .and_then(|l| l.checked_sub(1))
            .and_then(|l| self.shifts.get(l))
            .and_then(|shifts| shifts.iter().rev().find(|(from, _)| *from <= column))
            .map_or(0, |&(_, shift)| shift);
        (line, column.saturating_add_signed(-shift))
    }
}

/// Rewrites `text`, reading variables from `env` and `${file:…}` files from disk.
pub(crate) fn expand(text: &str, env: &HashMap<String, String>) -> Expansion {
    let mut out = String::with_capacity(text.len());
    let mut vars = env.clone();
    let mut errors = Vec::new();
    let mut shifts = Vec::new();
    let mut files = 0usize;

    for (index, line) in text.split_inclusive('\n').enumerate() {
        let line_no = index as u64 + 1;
        let mut line_shifts = Vec::new();
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            shifts.push(line_shifts);
            continue;
        }
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        let mut new_col: u64 = 1;
        let mut shift: i64 = 0;
        while i < chars.len() {
            let orig_col = i as u64 + 1;
            if chars[i] != '$' {
                out.push(chars[i]);
                i += 1;
                new_col += 1;
                continue;
            }
            match chars.get(i + 1) {
                Some('$') => {
                    out.push_str("$$");
                    i += 2;
                    new_col += 2;
                }
                Some('{') => {
                    let Some(close) = chars[i + 2..].iter().position(|&c| c == '}') else {
                        errors.push((
                            (line_no, orig_col),
                            "unclosed `${`: write `${env:VAR}`, or `$$` for a literal `$`".into(),
                        ));
                        out.extend(&chars[i..]);
                        break;
                    };
                    let body: String = chars[i + 2..i + 2 + close].iter().collect();
                    let consumed = close + 3;
                    let replacement = match rewrite_reference(&body, &vars, &mut files) {
                        Ok(Reference::Variable(inner)) => format!("${{{inner}}}"),
                        Ok(Reference::File { name, contents }) => {
                            vars.insert(name.clone(), contents);
                            format!("${{{name}}}")
                        }
                        Err(message) => {
                            errors.push(((line_no, orig_col), message));
                            chars[i..i + consumed].iter().collect()
                        }
                    };
                    let new_len = replacement.chars().count() as u64;
                    out.push_str(&replacement);
                    i += consumed;
                    new_col += new_len;
                    shift += i64::try_from(new_len).unwrap_or(i64::MAX)
                        - i64::try_from(consumed).unwrap_or(i64::MAX);
                    line_shifts.push((new_col, shift));
                }
                _ => {
                    // A lone `$` is literal: escape it for the parser.
                    out.push_str("$$");
                    i += 1;
                    new_col += 2;
                    shift += 1;
                    line_shifts.push((new_col, shift));
                }
            }
        }
        shifts.push(line_shifts);
    }
    Expansion {
        text: out,
        vars,
        errors,
        shifts,
    }
}

enum Reference {
    /// `NAME` or `NAME:-default`, for the parser.
    Variable(String),
    /// A `${file:…}` reference, given a generated variable name.
    File { name: String, contents: String },
}

fn rewrite_reference(
    body: &str,
    vars: &HashMap<String, String>,
    files: &mut usize,
) -> Result<Reference, String> {
    if let Some(path) = body.strip_prefix("file:") {
        let contents = std::fs::read_to_string(path)
            .map_err(|e| format!("`${{file:{path}}}`: cannot read the file: {e}"))?;
        *files += 1;
        return Ok(Reference::File {
            name: format!("TAGPIPE_FILE_REFERENCE_{files}"),
            contents: contents.trim_end_matches(['\n', '\r']).to_owned(),
        });
    }
    let inner = body.strip_prefix("env:").unwrap_or(body);
    let name_len = inner
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(inner.len(), |(i, _)| i);
    let (name, op) = inner.split_at(name_len);
    let valid_name = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    if !valid_name {
        return Err(format!(
            "invalid reference `${{{body}}}`: expected `${{env:VAR}}`, `${{env:VAR:-default}}` \
             or `${{file:/path}}`"
        ));
    }
    let has_default = op.starts_with(":-") || op.starts_with('-');
    let known_op =
        op.is_empty() || has_default || [":+", "+", ":?", "?"].iter().any(|p| op.starts_with(p));
    if !known_op {
        return Err(format!(
            "invalid reference `${{{body}}}`: after the variable name, expected `}}` or `:-default`"
        ));
    }
    if op.is_empty() && !vars.contains_key(name) {
        return Err(format!(
            "environment variable `{name}` is not set and has no default \
             (write `${{env:{name}:-default}}` to give one)"
        ));
    }
    Ok(Reference::Variable(inner.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        HashMap::from([
            ("PORT".into(), "8080".into()),
            ("TOKEN".into(), "t0k".into()),
        ])
    }

    #[test]
    fn rewrites_env_references_and_tracks_columns() {
        let x = expand("a: ${env:PORT} x\nb: \"${TOKEN}\" $$ $y\n", &env());
        assert_eq!(x.text, "a: ${PORT} x\nb: \"${TOKEN}\" $$ $$y\n");
        assert!(x.errors.is_empty());
        // `x` is at column 16 in the original, 12 after the rewrite.
        assert_eq!(x.original((1, 12)), (1, 16));
        assert_eq!(x.original((1, 4)), (1, 4));
        // the `y` after a lone `$` moved right by one.
        assert_eq!(x.original((2, 21)), (2, 20));
    }

    #[test]
    fn unset_without_default_is_an_error_at_its_position() {
        let x = expand(
            "a: 1\nb: x ${env:MISSING}\nc: ${env:MISSING:-d}\n# ${env:IN_COMMENT}\n",
            &env(),
        );
        assert_eq!(x.errors.len(), 1, "{:?}", x.errors);
        assert_eq!(x.errors[0].0, (2, 6));
        assert!(x.errors[0].1.contains("`MISSING` is not set"));
    }

    #[test]
    fn bad_references_are_errors() {
        let x = expand("a: ${env:}\nb: ${env:X!}\nc: ${oops\n", &env());
        let lines: Vec<u64> = x.errors.iter().map(|e| e.0.0).collect();
        assert_eq!(lines, [1, 2, 3]);
    }

    #[test]
    fn file_references_read_the_file() {
        let path = std::env::temp_dir().join(format!("tagpipe-expand-{}", std::process::id()));
        std::fs::write(&path, "s3cret\n").unwrap();
        let x = expand(&format!("token: ${{file:{}}}\n", path.display()), &env());
        std::fs::remove_file(&path).unwrap();
        assert!(x.errors.is_empty(), "{:?}", x.errors);
        assert_eq!(x.text, "token: ${TAGPIPE_FILE_REFERENCE_1}\n");
        assert_eq!(x.vars["TAGPIPE_FILE_REFERENCE_1"], "s3cret");
    }
}
