//! `PATH/ID`: how every command names one resource (`ports/23464cbc-...`), the collection
//! and the id as the keys spell them.

/// A resource named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceRef {
    pub(crate) path: String,
    pub(crate) id: String,
}

impl std::fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.path, self.id)
    }
}

/// clap's value parser for `PATH/ID`: split at the first `/` (a key segment never holds
/// one), both parts non-empty and the id without a further `/`.
pub(crate) fn parse(text: &str) -> Result<ResourceRef, String> {
    let example = "e.g. ports/23464cbc-d910-430a-93f7-3776ea07f992";
    let Some((path, id)) = text.split_once('/') else {
        return Err(format!(
            "{text:?} has no \"/\": name a resource as PATH/ID, its collection and its id \
             ({example})"
        ));
    };
    if path.is_empty() || id.is_empty() || id.contains('/') {
        return Err(format!(
            "{text:?} is not PATH/ID: one collection, one \"/\", one id ({example})"
        ));
    }
    Ok(ResourceRef {
        path: path.to_string(),
        id: id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_slash_id_and_nothing_else() {
        let resource = parse("ports/abc").unwrap();
        assert_eq!(
            (resource.path.as_str(), resource.id.as_str()),
            ("ports", "abc")
        );
        assert_eq!(resource.to_string(), "ports/abc");
        assert!(parse("ports").unwrap_err().contains("has no \"/\""));
        for bad in ["/abc", "ports/", "ports/a/b"] {
            assert!(parse(bad).unwrap_err().contains("is not PATH/ID"), "{bad}");
        }
    }
}
