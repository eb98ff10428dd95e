//! Text: escaping for XML/HTML, and width estimates for layout.

/// `text` escaped for XML and HTML text and attribute values: `& < > " '` become
/// entities, and characters XML 1.0 forbids (control characters other than tab, newline
/// and carriage return; U+FFFE, U+FFFF) become U+FFFD, so that any name from a capture
/// file yields a well-formed document.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Advance of `c` in em, roughly as in DejaVu Sans (a wide font: erring wide is safe).
fn char_em(c: char) -> f64 {
    match c {
        'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' | 'I' => 0.3,
        ' ' | 'f' | 't' | 'r' | '(' | ')' | '[' | ']' | '-' | '/' => 0.4,
        'm' | 'w' | 'M' | 'W' | '%' | '@' => 0.95,
        'A'..='Z' => 0.72,
        '0'..='9' => 0.64,
        c if c.is_ascii() => 0.62,
        // CJK, Hangul, full-width forms: one em.
        '\u{1100}'..='\u{115F}' | '\u{2E80}'..='\u{A4CF}' | '\u{AC00}'..='\u{D7A3}' | '\u{F900}'..='\u{FAFF}' => 1.0,
        '\u{FF00}'..='\u{FF60}' => 1.0,
        _ => 0.7,
    }
}

/// Estimated width in pixels of `s` at `size` px.
pub(crate) fn width(s: &str, size: f64) -> f64 {
    s.chars().map(char_em).sum::<f64>() * size
}

/// `s` cut to fit `max` pixels at `size` px, ending in "…" when cut.
pub(crate) fn fit(s: &str, size: f64, max: f64) -> String {
    if width(s, size) <= max {
        return s.to_string();
    }
    let budget = max - width("…", size);
    let mut used = 0.0;
    let mut out = String::new();
    for c in s.chars() {
        used += char_em(c) * size;
        if used > budget {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_forbidden_characters() {
        assert_eq!(escape(r#"a<b>&"c"'d'"#), "a&lt;b&gt;&amp;&quot;c&quot;&#39;d&#39;");
        assert_eq!(escape("x\u{0}y\u{1b}z\u{FFFF}"), "x\u{FFFD}y\u{FFFD}z\u{FFFD}");
        assert_eq!(escape("tab\tnl\n µs → ü"), "tab\tnl\n µs → ü");
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }

    #[test]
    fn fits_text_with_an_ellipsis() {
        assert_eq!(fit("short", 12.0, 200.0), "short");
        let long = "h1 eth0 tc_egress → h2 eth0 xdp ".repeat(10);
        let cut = fit(&long, 12.0, 150.0);
        assert!(cut.ends_with('…') && width(&cut, 12.0) <= 150.0 + 1e-9, "{cut}");
        assert_eq!(fit("abc", 12.0, 1.0), "…");
        assert!(width("WWW", 10.0) > width("iii", 10.0));
    }
}
