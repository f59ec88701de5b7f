//! Latency histograms as report text: HdrHistogram's V2 encoding (the
//! format every HdrHistogram implementation reads), base64-encoded. The
//! encoding is a function of the recorded counts, so the same histogram
//! always gives the same text; merging decoded histograms is exact, which
//! is how percentiles across seeds are computed (never by averaging
//! percentiles).

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use hdrhistogram::Histogram;

/// A histogram that could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum HdrError {
    #[error("latency histogram is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("latency histogram does not decode: {0:?}")]
    Decode(hdrhistogram::serialization::DeserializeError),
    #[error("latency histograms cannot be merged: {0:?}")]
    Merge(hdrhistogram::errors::AdditionError),
}

/// The V2 encoding of `h`, in base64.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .expect("serialising into memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The histogram that [`encode`] wrote.
pub fn decode(text: &str) -> Result<Histogram<u64>, HdrError> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text)?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(HdrError::Decode)
}

/// The sum of the histograms encoded in `texts` (None when there are none).
pub fn merge<'a>(
    texts: impl IntoIterator<Item = &'a str>,
) -> Result<Option<Histogram<u64>>, HdrError> {
    let mut sum: Option<Histogram<u64>> = None;
    for text in texts {
        let h = decode(text)?;
        match &mut sum {
            Some(s) => s.add(&h).map_err(HdrError::Merge)?,
            None => sum = Some(h),
        }
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_merges_exactly() {
        let mut a = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        let mut b = a.clone();
        for v in [1_000, 20_000, 20_500, 1_300_000] {
            a.record(v).unwrap();
        }
        b.record(5_000_000).unwrap();
        let (ta, tb) = (encode(&a), encode(&b));
        assert_eq!(ta, encode(&decode(&ta).unwrap()));
        let m = merge([ta.as_str(), tb.as_str()]).unwrap().unwrap();
        assert_eq!(m.len(), 5);
        assert_eq!(m.max(), b.max());
        assert!(merge([]).unwrap().is_none());
        assert!(decode("not base64!").is_err());
    }
}
