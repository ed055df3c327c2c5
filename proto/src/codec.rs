//! The generated services' codec: prost's, except that a message is decoded from its bytes
//! as one slice. tonic hands a decoder a buffer whose every read goes through `BytesMut`'s
//! bookkeeping, and a node summary is tens of thousands of packed floats read one at a time:
//! at 5,000 nodes that was a third of the aggregator's time to take in a window. The
//! messages and errors are prost's own, bit for bit.

use std::marker::PhantomData;

use prost::{Message, bytes::Buf as _};
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder},
};
use tonic_prost::ProstEncoder;

/// [`tonic_prost::ProstCodec`], decoding from one slice.
#[derive(Debug, Clone)]
pub struct SliceCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for SliceCodec<T, U> {
    fn default() -> Self {
        Self { _pd: PhantomData }
    }
}

impl<T, U> Codec for SliceCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = SliceDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        SliceDecoder { _pd: PhantomData }
    }
}

#[derive(Debug, Clone)]
pub struct SliceDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: Message + Default> Decoder for SliceDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let len = buf.remaining();
        // One message is one contiguous chunk of tonic's buffer; should it ever not be, a
        // copy makes it one.
        let decoded = if buf.chunk().len() == len {
            let decoded = U::decode(buf.chunk());
            buf.advance(len);
            decoded
        } else {
            U::decode(buf.copy_to_bytes(len))
        };
        // As prost's codec says it.
        decoded
            .map(Some)
            .map_err(|err| Status::internal(err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;
    use http_body_util::Full;
    use prost::bytes::{BufMut as _, Bytes, BytesMut};
    use tonic::codec::Streaming;

    use super::*;
    use crate::herd::v1 as pb;

    /// The messages that a stream of these gRPC frames carries, through the decoder.
    async fn decode(frames: &[&[u8]]) -> Vec<Result<pb::NodeSummary, Status>> {
        let mut body = BytesMut::new();
        for frame in frames {
            body.put_u8(0);
            body.put_u32(frame.len() as u32);
            body.put_slice(frame);
        }
        let stream = Streaming::new_request(
            SliceDecoder::<pb::NodeSummary> { _pd: PhantomData },
            Full::new(Bytes::from(body)),
            None,
            None,
        );
        stream.collect().await
    }

    #[tokio::test]
    async fn decodes_what_prost_encodes_and_refuses_garbage_as_prost_does() {
        let summary = pb::NodeSummary {
            node: "node-a".into(),
            features: vec!["cpu".into(), "memory".into()],
            sequence: 7,
            ..Default::default()
        };
        let other = pb::NodeSummary {
            node: "node-b".into(),
            ..Default::default()
        };
        let (a, b) = (summary.encode_to_vec(), other.encode_to_vec());
        let decoded = decode(&[&a, &b]).await;
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].as_ref().unwrap(), &summary);
        assert_eq!(decoded[1].as_ref().unwrap(), &other);

        let garbage = [0xff, 0xff, 0xff];
        let decoded = decode(&[&garbage]).await;
        let err = decoded[0].as_ref().unwrap_err();
        assert_eq!(err.code(), tonic::Code::Internal);
        assert_eq!(
            err.message(),
            pb::NodeSummary::decode(&garbage[..])
                .unwrap_err()
                .to_string()
        );
    }
}
