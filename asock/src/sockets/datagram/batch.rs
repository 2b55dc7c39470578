//! [`DatagramBatch`]: what one receive took from the kernel, whole: one buffer of datagrams of
//! one size from one sender (a buffer the kernel coalesced with UDP GRO), or a single datagram.

use bytes::Bytes;

use super::Datagram;
use crate::address::SocketAddress;

/// Datagrams from one sender, received whole: one buffer holding consecutive datagrams of
/// [`segment_size`](Self::segment_size) bytes each, the last possibly shorter. Made by
/// [`BoundDatagramSocket::receive_batch`](super::BoundDatagramSocket::receive_batch) (and its
/// connected twin).
///
/// With UDP generic receive offload (Linux `UDP_GRO`, see
/// [`UdpSocketBuilder::gro`](super::UdpSocketBuilder::gro)) the kernel hands over up to 64
/// datagrams of one flow as one buffer and says their size; a batch is that buffer, so a
/// consumer that wants it whole (to write it to a file, to decrypt it in place, to echo it back
/// with one [`send_batch`](super::BoundDatagramSocket::send_batch)) never sees it cut up.
/// Without GRO, or for a datagram that arrived alone, a batch holds one datagram and its
/// segment size is that datagram's length.
///
/// Iterating yields the datagrams as [`Datagram`]s whose packets are [`Bytes`] slices of the one
/// buffer (no copy per datagram):
///
/// ```
/// # fn main() -> asock::Result<()> {
/// use asock::{a_socket, SelectorManager};
/// let selector = SelectorManager::builder().threads(1).build()?;
/// selector.run_blocking(async {
///     let rx = a_socket(&selector).udp().bind("127.0.0.1:0").await?;
///     let tx = a_socket(&selector).udp().bind("127.0.0.1:0").await?;
///     // Three datagrams of 1,000 bytes and one of 200, in one send (one GSO message on Linux).
///     let data = bytes::Bytes::from(vec![1u8; 3_200]);
///     tx.send_batch(rx.local_address().clone(), 1_000, data).await?;
///     let mut sizes = Vec::new();
///     while sizes.len() < 4 {
///         let batch = rx.receive_batch().await?;
///         assert_eq!(batch.address(), tx.local_address());
///         sizes.extend(batch.into_iter().map(|d| d.packet.len()));
///     }
///     assert_eq!(sizes, [1_000, 1_000, 1_000, 200]);
///     Ok(())
/// })
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatagramBatch {
    buffer: Bytes,
    segment_size: usize,
    address: SocketAddress,
}

impl DatagramBatch {
    /// One datagram (`segment_size` is its length) or, for a coalesced buffer, `segment_size`
    /// bytes per datagram. A `segment_size` of 0 or past the buffer's length means one datagram.
    pub(super) fn new(buffer: Bytes, segment_size: usize, address: SocketAddress) -> Self {
        let segment_size = if segment_size == 0 || segment_size > buffer.len() {
            buffer.len()
        } else {
            segment_size
        };
        DatagramBatch {
            buffer,
            segment_size,
            address,
        }
    }

    /// The datagrams, back to back.
    pub fn buffer(&self) -> &Bytes {
        &self.buffer
    }

    /// The size of every datagram but the last, which may be shorter; for a batch of one
    /// datagram, its length (0 for an empty datagram).
    pub fn segment_size(&self) -> usize {
        self.segment_size
    }

    /// The sender of every datagram in the batch.
    pub fn address(&self) -> &SocketAddress {
        &self.address
    }

    /// How many datagrams the batch holds (at least one: an empty datagram counts).
    pub fn len(&self) -> usize {
        if self.buffer.is_empty() {
            1
        } else {
            self.buffer.len().div_ceil(self.segment_size)
        }
    }

    /// Always `false`: a batch holds at least one datagram (possibly an empty one).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The datagrams' payloads, in order: slices of [`buffer`](Self::buffer), no copies.
    pub fn packets(&self) -> BatchPackets {
        BatchPackets {
            rest: Some(self.buffer.clone()),
            segment_size: self.segment_size,
        }
    }

    /// The buffer, the segment size and the sender.
    pub fn into_parts(self) -> (Bytes, usize, SocketAddress) {
        (self.buffer, self.segment_size, self.address)
    }

    /// Takes the first datagram off the batch; `None` when it was the last (the batch is then
    /// that datagram's packet and should be dropped after use).
    pub(super) fn split_first(&mut self) -> Option<Datagram> {
        if self.buffer.len() <= self.segment_size {
            return None;
        }
        let packet = self.buffer.split_to(self.segment_size);
        Some(Datagram {
            packet,
            address: self.address.clone(),
        })
    }

    /// The batch as its one (last) datagram.
    pub(super) fn into_last(self) -> Datagram {
        Datagram {
            packet: self.buffer,
            address: self.address,
        }
    }
}

/// The payloads of a [`DatagramBatch`], in order: [`Bytes`] slices of its one buffer.
#[derive(Debug, Clone)]
pub struct BatchPackets {
    /// What is left; `None` once the last packet (possibly empty) was handed out.
    rest: Option<Bytes>,
    segment_size: usize,
}

impl Iterator for BatchPackets {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let rest = self.rest.as_mut()?;
        if rest.len() > self.segment_size {
            Some(rest.split_to(self.segment_size))
        } else {
            self.rest.take()
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match &self.rest {
            None => 0,
            Some(r) if r.is_empty() => 1,
            Some(r) => r.len().div_ceil(self.segment_size),
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for BatchPackets {}

/// The datagrams of a [`DatagramBatch`], in order; each packet a slice of the batch's buffer.
#[derive(Debug, Clone)]
pub struct BatchIter {
    packets: BatchPackets,
    address: SocketAddress,
}

impl Iterator for BatchIter {
    type Item = Datagram;

    fn next(&mut self) -> Option<Datagram> {
        let packet = self.packets.next()?;
        Some(Datagram {
            packet,
            address: self.address.clone(),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.packets.size_hint()
    }
}

impl ExactSizeIterator for BatchIter {}

impl IntoIterator for DatagramBatch {
    type Item = Datagram;
    type IntoIter = BatchIter;

    fn into_iter(self) -> BatchIter {
        BatchIter {
            packets: self.packets(),
            address: self.address,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from() -> SocketAddress {
        "127.0.0.1:9".parse().unwrap()
    }

    fn sizes(b: &DatagramBatch) -> Vec<usize> {
        b.packets().map(|p| p.len()).collect()
    }

    #[test]
    fn a_coalesced_buffer_splits_by_its_segment_size_with_a_short_last() {
        let b = DatagramBatch::new(Bytes::from(vec![0u8; 2_500]), 1_000, from());
        assert_eq!(b.len(), 3);
        assert_eq!(b.packets().len(), 3);
        assert_eq!(sizes(&b), [1_000, 1_000, 500]);
        let all: Vec<Datagram> = b.clone().into_iter().collect();
        assert!(all.iter().all(|d| d.address == from()));
        assert_eq!(all[2].packet.len(), 500);
    }

    #[test]
    fn even_buffers_single_and_empty_datagrams() {
        let even = DatagramBatch::new(Bytes::from(vec![0u8; 3_000]), 1_000, from());
        assert_eq!(sizes(&even), [1_000, 1_000, 1_000]);
        let one = DatagramBatch::new(Bytes::from_static(b"hello"), 5, from());
        assert_eq!((one.len(), one.segment_size()), (1, 5));
        assert_eq!(sizes(&one), [5]);
        // A segment size the kernel should never send (0, or past the buffer): one datagram.
        for bad in [0, 6, 1 << 20] {
            let b = DatagramBatch::new(Bytes::from_static(b"hello"), bad, from());
            assert_eq!((b.len(), sizes(&b)), (1, vec![5]), "segment size {bad}");
        }
        let empty = DatagramBatch::new(Bytes::new(), 0, from());
        assert_eq!((empty.len(), empty.segment_size()), (1, 0));
        assert_eq!(sizes(&empty), [0]);
        assert!(!empty.is_empty());
    }

    #[test]
    fn split_first_hands_out_every_datagram_then_the_last() {
        let mut b = DatagramBatch::new(Bytes::from(vec![7u8; 2_100]), 1_000, from());
        let mut got = Vec::new();
        while let Some(d) = b.split_first() {
            got.push(d.packet.len());
        }
        got.push(b.into_last().packet.len());
        assert_eq!(got, [1_000, 1_000, 100]);
        let (buf, seg, addr) =
            DatagramBatch::new(Bytes::from_static(b"ab"), 1, from()).into_parts();
        assert_eq!((&buf[..], seg, addr), (&b"ab"[..], 1, from()));
    }
}
