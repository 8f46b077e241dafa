using System.Runtime.CompilerServices;
using Bastion.Protocols.Http.Codec;
using Bastion.Protocols.Http.Io;

namespace Bastion.Protocols.Http.Engine;

/// <summary>How a body leaves the gateway.</summary>
public enum BodyOut : byte
{
    /// <summary>As it came: Content-Length bytes as they are, chunked in canonical chunked form, close-delimited as is.</summary>
    AsFramed,
    /// <summary>A close-delimited body chunk-encoded (to an HTTP/1.1 client).</summary>
    Chunked,
    /// <summary>A chunked body as plain data (to an HTTP/1.0 client, close-delimited).</summary>
    DataOnly,
}

public enum PumpEnd : byte { Complete, SourceEnded, SourceInvalid, SourceFailed, SinkFailed, OverLimit, Stopped }

/// <summary>How a body transfer ended: bytes of data, wire bytes each way, and the error if the source broke the framing.</summary>
public readonly record struct PumpResult(PumpEnd End, long DataBytes, long WireIn, long WireOut, HttpError Error = default)
{
    public bool Ok => End == PumpEnd.Complete;
}

/// <summary>
/// Moves one message body from a peer to a duplex in constant memory: through the peer's own buffer, in place
/// (the chunked decoder canonicalises framing where it lies, the encoder frames data where it lies). Bytes already
/// buffered go first; bytes after the body stay in the peer's buffer (the next message).
/// </summary>
public static class BodyPump
{
    /// <param name="limit">most data bytes allowed (OverLimit past it, before sending the excess).</param>
    /// <param name="activity">re-armed with <paramref name="idle"/> after every transfer (idle timeout).</param>
    /// <param name="progress">called with the data bytes so far; true stops the transfer (a late response rule).</param>
    /// <param name="decoder">a chunked body's decoder state when part of it was taken already (sent with the head).</param>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    public static async ValueTask<PumpResult> CopyAsync(Peer from, Duplex to, BodyFraming framing, BodyOut mode, long limit,
        Expiring? activity, TimeSpan idle, Func<long, bool>? progress = null, int errorStatus = 400, ChunkedDecoder decoder = default)
    {
        long data = decoder.DataBytes, wireIn = 0, wireOut = 0;
        long remaining = framing.Length;
        bool chunkOut = mode == BodyOut.Chunked && framing.Kind == BodyKind.UntilClose;
        bool dataOnly = mode == BodyOut.DataOnly;
        if (framing.Kind == BodyKind.None) return new(PumpEnd.Complete, 0, 0, 0);
        while (true)
        {
            // Use what is buffered.
            if (from.Count > 0)
            {
                int send, take;
                int sendStart = from.Start;
                switch (framing.Kind)
                {
                    case BodyKind.Length:
                        take = send = (int)Math.Min(from.Count, remaining);
                        remaining -= take;
                        data += take;
                        break;
                    case BodyKind.Chunked:
                        {
                            long before = decoder.DataBytes;
                            var r = decoder.Transform(from.DataSpan, dataOnly, out take, out send, out var error, errorStatus);
                            data += decoder.DataBytes - before;
                            if (r == ParseResult.Invalid) return new(PumpEnd.SourceInvalid, data, wireIn, wireOut, error);
                            break;
                        }
                    default:
                        take = send = from.Count;
                        data += take;
                        if (chunkOut)
                        {
                            from.ReserveAround(ChunkedEncoder.Prefix, ChunkedEncoder.Suffix);
                            int start = ChunkedEncoder.Frame(from.Array.AsSpan(from.Start - ChunkedEncoder.Prefix), take);
                            sendStart = from.Start - ChunkedEncoder.Prefix + start;
                            send = ChunkedEncoder.Prefix - start + take + ChunkedEncoder.Suffix;
                        }
                        break;
                }
                if (data > limit) return new(PumpEnd.OverLimit, data, wireIn + take, wireOut);
                if (progress is not null && progress(data)) return new(PumpEnd.Stopped, data, wireIn + take, wireOut);
                if (send > 0)
                {
                    try { await to.SendAsync(from.Array.AsMemory(sendStart, send)).ConfigureAwait(false); }
                    catch (Exception e) when (Duplex.IsIoError(e)) { return new(PumpEnd.SinkFailed, data, wireIn + take, wireOut); }
                    wireOut += send;
                    activity?.ExpireIn(idle);
                }
                from.Consume(take);
                wireIn += take;
                bool done = framing.Kind switch
                {
                    BodyKind.Length => remaining == 0,
                    BodyKind.Chunked => decoder.IsDone,
                    _ => false,
                };
                if (done) return new(PumpEnd.Complete, data, wireIn, wireOut);
                // A chunk-size line split across reads stays buffered: read more after it.
                if (from.Count > 0 && take > 0) continue;
            }
            int n;
            try
            {
                n = chunkOut
                    ? await from.ReceiveFramedAsync(ChunkedEncoder.Prefix, ChunkedEncoder.Suffix).ConfigureAwait(false)
                    : await from.ReceiveAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (Duplex.IsIoError(e)) { return new(PumpEnd.SourceFailed, data, wireIn, wireOut); }
            if (n < 0) return new(PumpEnd.SourceInvalid, data, wireIn, wireOut, new HttpError(errorStatus, "chunk framing line longer than the buffer"));
            if (n == 0)
            {
                if (framing.Kind != BodyKind.UntilClose) return new(PumpEnd.SourceEnded, data, wireIn, wireOut);
                if (chunkOut)
                {
                    try { await to.SendAsync(LastChunk).ConfigureAwait(false); }
                    catch (Exception e) when (Duplex.IsIoError(e)) { return new(PumpEnd.SinkFailed, data, wireIn, wireOut); }
                    wireOut += LastChunk.Length;
                }
                return new(PumpEnd.Complete, data, wireIn, wireOut);
            }
            activity?.ExpireIn(idle);
        }
    }

    static readonly ReadOnlyMemory<byte> LastChunk = "0\r\n\r\n"u8.ToArray();
}
