//! Log-format strings, as `set-header`, `return lf-string` and `redirect` take them: text
//! with `%[fetch]` samples and the `%ci %cp %fi %fp` aliases; `%%` is a percent sign.
use super::acl::fetch_named;
use crate::haproxy::model::{Fetch, Format, FormatPart};

pub(super) fn parse_format(s: &str) -> Result<Format, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        text.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let fetch = if let Some(r) = rest.strip_prefix('%') {
            text.push('%');
            rest = r;
            continue;
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { return Err(format!("'{s}': missing ']' after '%['")) };
            let expr = r[..end].trim();
            if expr.contains(',') {
                return Err(format!("'{s}': converters ('{expr}') are not supported by ballast"));
            }
            rest = &r[end + 1..];
            fetch_named(expr)?
        } else {
            let alias = rest.get(..2).unwrap_or("");
            let f = match alias {
                "ci" => Fetch::Src,
                "cp" => Fetch::SrcPort,
                "fi" => Fetch::Dst,
                "fp" => Fetch::DstPort,
                _ => return Err(format!("'{s}': log-format variable '%{rest}' is not supported by ballast")),
            };
            rest = &rest[2..];
            f
        };
        if !text.is_empty() {
            parts.push(FormatPart::Text(std::mem::take(&mut text)));
        }
        parts.push(FormatPart::Fetch(fetch));
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(FormatPart::Text(text));
    }
    Ok(Format(parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(parse_format("https").unwrap(), Format(vec![FormatPart::Text("https".into())]));
        assert_eq!(
            parse_format("ip=%[src]:%cp 100%%").unwrap(),
            Format(vec![
                FormatPart::Text("ip=".into()),
                FormatPart::Fetch(Fetch::Src),
                FormatPart::Text(":".into()),
                FormatPart::Fetch(Fetch::SrcPort),
                FormatPart::Text(" 100%".into()),
            ])
        );
        assert_eq!(
            parse_format("%[req.hdr(Host)]").unwrap().0,
            [FormatPart::Fetch(Fetch::Hdr("host".into()))]
        );
        assert!(parse_format("%[src,ipmask(24)]").is_err());
        assert!(parse_format("%[nope]").is_err());
        assert!(parse_format("%[src").is_err());
        assert!(parse_format("%T").is_err());
    }
}
