//! Splits `name:tag` image references. testcontainers needs name and tag
//! separately, and the Redis module's own default (redis:5.0) is too old.

use crate::error::ProviderError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageRef {
    pub(crate) name: String,
    pub(crate) tag: String,
}

impl ImageRef {
    /// `registry:5000/redis` has a colon that belongs to the registry, so
    /// only a colon after the last `/` starts the tag; no tag means `latest`.
    pub(crate) fn parse(image: &str) -> Result<Self, ProviderError> {
        let invalid = |reason| ProviderError::InvalidImage {
            image: image.to_string(),
            reason,
        };
        let image_trimmed = image.trim();
        if image_trimmed.is_empty() {
            return Err(invalid("the image name is empty"));
        }
        if image_trimmed.contains('@') {
            return Err(invalid(
                "digest references (name@sha256:...) are not supported; use name:tag",
            ));
        }
        if image_trimmed.chars().any(char::is_whitespace) {
            return Err(invalid("the image reference contains whitespace"));
        }
        let last_path_start = image_trimmed.rfind('/').map_or(0, |slash| slash + 1);
        let (name, tag) = match image_trimmed[last_path_start..].rfind(':') {
            Some(colon) => {
                let colon = last_path_start + colon;
                (&image_trimmed[..colon], &image_trimmed[colon + 1..])
            }
            None => (image_trimmed, "latest"),
        };
        if name.is_empty() || name.ends_with('/') {
            return Err(invalid("the image name is empty"));
        }
        if tag.is_empty() {
            return Err(invalid("the tag after ':' is empty"));
        }
        Ok(ImageRef {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(image: &str) -> (String, String) {
        let image_ref = ImageRef::parse(image).unwrap();
        (image_ref.name, image_ref.tag)
    }

    #[test]
    fn name_and_tag_are_split_at_the_last_colon() {
        assert_eq!(split("redis:7.2"), ("redis".into(), "7.2".into()));
        assert_eq!(
            split("recovery-redis:7.0"),
            ("recovery-redis".into(), "7.0".into())
        );
    }

    #[test]
    fn missing_tag_means_latest() {
        assert_eq!(split("redis"), ("redis".into(), "latest".into()));
        assert_eq!(
            split("registry.local:5000/team/redis"),
            ("registry.local:5000/team/redis".into(), "latest".into())
        );
    }

    #[test]
    fn registry_port_is_not_mistaken_for_a_tag() {
        assert_eq!(
            split("registry.local:5000/redis:7.2-alpine"),
            ("registry.local:5000/redis".into(), "7.2-alpine".into())
        );
    }

    #[test]
    fn bad_references_are_rejected_with_the_reason() {
        for (image, expected) in [
            ("", "empty"),
            ("redis:", "tag"),
            (":7.2", "name is empty"),
            ("registry:5000/", "name is empty"),
            ("redis@sha256:abc", "digest"),
            ("red is:7", "whitespace"),
        ] {
            let error = ImageRef::parse(image).unwrap_err().to_string();
            assert!(error.contains(expected), "{image:?}: {error}");
        }
    }
}
