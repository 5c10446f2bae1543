//! The fields of a `multipart/form-data` body (RFC 7578): what the
//! browser sends for a form with a file (the configuration restore). Only
//! what the console needs: each part's name, file name and content, read
//! whole from a body the guard already bounded.

/// One part: its field name, its file name if it is a file, its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content: Vec<u8>,
}

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.eq_ignore_ascii_case("boundary")
            .then(|| v.trim_matches('"').to_owned())
            .filter(|b| !b.is_empty() && b.len() <= 70)
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A parameter (`name="x"`) of a `Content-Disposition` header.
fn param(disposition: &str, name: &str) -> Option<String> {
    disposition.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// The parts of `body`; None when it is not well formed.
pub fn parts(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delimiter = format!("--{boundary}");
    let mut rest = &body[find(body, delimiter.as_bytes())? + delimiter.len()..];
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let head_end = find(rest, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&rest[..head_end]).ok()?;
        let disposition = head.split("\r\n").find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-disposition")
                .then(|| v.trim().to_owned())
        })?;
        let content_start = head_end + 4;
        let next = format!("\r\n{delimiter}");
        let end = content_start + find(&rest[content_start..], next.as_bytes())?;
        parts.push(Part {
            name: param(&disposition, "name")?,
            filename: param(&disposition, "filename"),
            content: rest[content_start..end].to_vec(),
        });
        rest = &rest[end + next.len()..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_browsers_form_with_a_file_reads_into_its_parts() {
        let ct = "multipart/form-data; boundary=----WebKitFormBoundaryx7";
        let b = boundary(ct).unwrap();
        assert_eq!(b, "----WebKitFormBoundaryx7");
        let body = "------WebKitFormBoundaryx7\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nt0k\r\n\
                    ------WebKitFormBoundaryx7\r\nContent-Disposition: form-data; name=\"file\"; filename=\"lb.toml\"\r\n\
                    Content-Type: application/octet-stream\r\n\r\n[node]\r\nname = \"lb1\"\n\r\n------WebKitFormBoundaryx7--\r\n";
        let parts = parts(body.as_bytes(), &b).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].name.as_str(), &parts[0].content[..]),
            ("csrf", &b"t0k"[..])
        );
        assert_eq!(parts[1].filename.as_deref(), Some("lb.toml"));
        assert_eq!(parts[1].content, b"[node]\r\nname = \"lb1\"\n");
        assert!(boundary("application/x-www-form-urlencoded").is_none());
        assert!(super::parts(b"garbage", &b).is_none());
        assert!(super::parts(&body.as_bytes()[..60], &b).is_none());
    }
}
