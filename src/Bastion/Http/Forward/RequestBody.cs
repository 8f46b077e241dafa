using System.Buffers;
using System.IO.Pipelines;
using System.Net;

namespace Bastion.Http.Forward;

/// <summary>Why a client's request body failed: bad framing (400) or over the limit (413).</summary>
public sealed class BodyException(int status, string reason) : Exception(reason)
{
    public int Status { get; } = status;
}

/// <summary>
/// Reads a request body off the client's pipe, by Content-Length or chunked framing, counting against the
/// body limit. Chunked framing is decoded strictly (hex size, optional extensions, CRLF), trailers dropped.
/// </summary>
public sealed class RequestBody
{
    readonly PipeReader _reader;
    readonly long _max;
    readonly bool _chunked;
    long _remaining;          // in the current chunk, or of the Content-Length
    State _state;
    public long Total { get; private set; }
    public bool Complete => _state == State.Done;
    public BodyException? Failure { get; private set; }
    /// <summary>Called before the first read (to send 100 Continue).</summary>
    public Func<ValueTask>? OnFirstRead { get; set; }

    enum State { Size, Data, DataEnd, Trailers, Done }

    public RequestBody(PipeReader reader, long contentLength, bool chunked, long max)
    {
        _reader = reader;
        _max = max;
        _chunked = chunked;
        _remaining = chunked ? 0 : contentLength;
        _state = chunked ? State.Size : (contentLength > 0 ? State.Data : State.Done);
    }

    public async ValueTask<int> ReadAsync(Memory<byte> dest, CancellationToken ct)
    {
        if (OnFirstRead is { } first)
        {
            OnFirstRead = null;
            await first().ConfigureAwait(false);
        }
        while (true)
        {
            if (_state == State.Done) return 0;
            var result = await _reader.ReadAsync(ct).ConfigureAwait(false);
            var buf = result.Buffer;
            if (_state == State.Data)
            {
                if (buf.IsEmpty && result.IsCompleted) throw Fail(400, "request body ended early");
                int n = (int)Math.Min(Math.Min(buf.Length, _remaining), dest.Length);
                buf.Slice(0, n).CopyTo(dest.Span);
                _reader.AdvanceTo(buf.GetPosition(n));
                _remaining -= n;
                Total += n;
                if (Total > _max) throw Fail(413, "request body over the limit");
                if (_remaining == 0) _state = _chunked ? State.DataEnd : State.Done;
                if (n > 0) return n;
                continue;
            }
            // Framing lines: chunk size, CRLF after data, trailers.
            var reader = new SequenceReader<byte>(buf);
            bool progressed = false;
            while (_state is State.Size or State.DataEnd or State.Trailers)
            {
                if (!reader.TryReadTo(out ReadOnlySpan<byte> line, "\r\n"u8, advancePastDelimiter: true))
                {
                    if (reader.Remaining > 4096) throw Fail(400, "chunk framing line too long");
                    break;
                }
                progressed = true;
                switch (_state)
                {
                    case State.DataEnd:
                        if (!line.IsEmpty) throw Fail(400, "missing CRLF after chunk data");
                        _state = State.Size;
                        break;
                    case State.Size:
                        _remaining = ParseChunkSize(line);
                        _state = _remaining == 0 ? State.Trailers : State.Data;
                        break;
                    case State.Trailers:
                        if (line.IsEmpty) _state = State.Done;
                        break;
                }
                if (_state == State.Data) break;
            }
            _reader.AdvanceTo(reader.Position, progressed ? reader.Position : buf.End);
            if (!progressed && result.IsCompleted) throw Fail(400, "request body ended early");
        }
    }

    long ParseChunkSize(ReadOnlySpan<byte> line)
    {
        int semi = line.IndexOf((byte)';');
        var digits = semi >= 0 ? line[..semi] : line;
        if (digits.IsEmpty || digits.Length > 15) throw Fail(400, "bad chunk size");
        long size = 0;
        foreach (var b in digits)
        {
            int v = HexValue(b);
            if (v < 0) throw Fail(400, "bad chunk size");
            size = (size << 4) | (uint)v;
        }
        if (semi >= 0)
            foreach (var b in line[(semi + 1)..])
                if ((b < 0x20 && b != (byte)'\t') || b == 0x7f) throw Fail(400, "bad chunk extension");
        return size;
    }

    static int HexValue(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
        _ => -1,
    };

    BodyException Fail(int status, string reason) => Failure = new BodyException(status, reason);
}

/// <summary>The request body as HttpClient content: streamed from the client's pipe, never buffered whole.</summary>
sealed class StreamedBodyContent(RequestBody body, long? length) : HttpContent
{
    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken ct)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(32 * 1024);
        try
        {
            int n;
            while ((n = await body.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
                await stream.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
        }
        finally { ArrayPool<byte>.Shared.Return(buffer); }
    }

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        SerializeToStreamAsync(stream, context, CancellationToken.None);

    protected override bool TryComputeLength(out long len)
    {
        len = length ?? -1;
        return length.HasValue;
    }
}
