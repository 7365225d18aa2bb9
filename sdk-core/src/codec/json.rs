//! serde JSON, the default codec.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::content_type::media_type;
use super::Codec;
use crate::handler::BoxError;

/// serde JSON (`application/json`). Reads `application/json`, `text/json` and the structured
/// suffix `application/*+json` (CloudEvents, JSON:API …).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Json;

impl<T: Serialize + DeserializeOwned + 'static> Codec<T> for Json {
    fn name(&self) -> &'static str {
        "json"
    }

    fn content_type(&self) -> &'static str {
        "application/json"
    }

    fn reads(&self, content_type: &str) -> bool {
        let media = media_type(content_type).to_ascii_lowercase();
        media == "application/json"
            || media == "text/json"
            || (media.starts_with("application/") && media.ends_with("+json"))
    }

    fn encode(&self, value: &T) -> Result<Bytes, BoxError> {
        Ok(Bytes::from(serde_json::to_vec(value)?))
    }

    fn decode(&self, payload: &[u8]) -> Result<T, BoxError> {
        Ok(serde_json::from_slice(payload)?)
    }
}
