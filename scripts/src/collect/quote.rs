//! Quoting for the one place a shell parses our words: the command line
//! ssh hands to the remote login shell. Everything else runs without a
//! shell (xshell, std::process), argument by argument.

use std::ffi::OsStr;

/// `s` as one POSIX shell word: inside single quotes nothing is special,
/// and a single quote itself becomes `'\''`. Works for sh, bash, dash, zsh
/// and fish alike. NUL cannot be passed through a command line at all.
pub fn sh_quote(s: &str) -> Result<String, NulInArgument> {
    if s.contains('\0') {
        return Err(NulInArgument(s.replace('\0', "\\0")));
    }
    Ok(format!("'{}'", s.replace('\'', r"'\''")))
}

/// The words as one remote command line, each quoted.
pub fn sh_join<S: AsRef<str>>(words: &[S]) -> Result<String, NulInArgument> {
    Ok(words.iter().map(|w| sh_quote(w.as_ref())).collect::<Result<Vec<_>, _>>()?.join(" "))
}

/// An argument with a NUL byte (cannot be passed to a program).
#[derive(Debug, thiserror::Error)]
#[error("argument {0:?} contains a NUL byte")]
pub struct NulInArgument(pub String);

/// An argv for humans (`--dry-run`): plain words stay bare, others are quoted.
pub fn display<S: AsRef<OsStr>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| {
            let a = a.as_ref().to_string_lossy();
            let plain = !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
            if plain {
                a.into_owned()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Words a hostile configuration or filter could carry.
    const HOSTILE: &[&str] = &[
        "plain",
        "two words",
        "it's",
        "'",
        "''",
        "\"double\"",
        "x; touch /tmp/netlat-pwned-quote",
        "$(touch /tmp/netlat-pwned-quote)",
        "`touch /tmp/netlat-pwned-quote`",
        "${HOME}",
        "-rf",
        "--",
        "a\nb",
        "tab\there",
        "back\\slash",
        "*",
        "~",
        "!",
        "",
        "é ü",
    ];

    #[test]
    fn a_real_shell_gets_every_word_back() {
        let line = sh_join(HOSTILE).unwrap();
        // printf prints each argument followed by NUL: compare byte for byte.
        let out = Command::new("sh").arg("-c").arg(format!("printf '%s\\0' {line}")).output().unwrap();
        assert!(out.status.success());
        let got: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
        let want: Vec<&[u8]> = HOSTILE.iter().map(|s| s.as_bytes()).chain([&b""[..]]).collect();
        assert_eq!(got, want);
        assert!(!std::path::Path::new("/tmp/netlat-pwned-quote").exists());
    }

    #[test]
    fn nul_is_refused() {
        assert!(sh_quote("a\0b").is_err());
    }

    #[test]
    fn display_quotes_only_what_needs_it() {
        assert_eq!(display(&["ssh", "-p", "22", "--", "198.18.0.1"]), "ssh -p 22 -- 198.18.0.1");
        assert_eq!(display(&["echo", "a b", "it's", ""]), r"echo 'a b' 'it'\''s' ''");
    }
}
