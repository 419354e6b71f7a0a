//! Secrets out of text that leaves the process: a password in a URL
//! (`postgres://user:secret@host/db`) becomes `postgres://user:***@host/db`.

/// `text` with the password of every `scheme://user:password@` replaced by `***`.
pub fn redact_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first '/', whitespace or quote; a password is the
        // part after the first ':' of what comes before its last '@'.
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"' || c == '?')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                        out.push_str(&authority[at..]);
                    }
                    None => out.push_str(authority),
                }
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_passwords_in_urls_and_nothing_else() {
        assert_eq!(
            redact_secrets("cannot connect to postgres://app:s3cr:et@db:5432/x: refused"),
            "cannot connect to postgres://app:***@db:5432/x: refused"
        );
        assert_eq!(
            redact_secrets("'postgres://u:p@h/db' and http://h:80/p and kafka://k"),
            "'postgres://u:***@h/db' and http://h:80/p and kafka://k"
        );
        assert_eq!(
            redact_secrets("postgres://user@h/db"),
            "postgres://user@h/db"
        );
        assert_eq!(redact_secrets("no urls"), "no urls");
    }
}
