using System.Buffers;
using System.IO.Pipelines;
using System.Net;

namespace Bastion.Protocols.HttpProxy;

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
                // Fail at the first wrong byte rather than when (if ever) a CRLF turns up.
                if (_state == State.DataEnd && reader.TryPeek(out byte next)
                    && (next != (byte)'\r' || (reader.Remaining >= 2 && !reader.IsNext("\r\n"u8))))
                    throw Fail(400, "missing CRLF after chunk data");
                if (_state == State.Size && reader.TryPeek(out next) && HexValue(next) < 0)
                    throw Fail(400, "bad chunk size");
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
        int n = 0;
        while (n < line.Length && HexValue(line[n]) >= 0) n++;
        if (n == 0 || n > 15) throw Fail(400, "bad chunk size");
        long size = 0;
        foreach (var b in line[..n]) size = (size << 4) | (uint)HexValue(b);
        if (n < line.Length && !ValidExtensions(line[n..])) throw Fail(400, "bad chunk extension");
        return size;
    }

    /// <summary>RFC 9112 §7.1.1: *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ).</summary>
    static bool ValidExtensions(ReadOnlySpan<byte> s)
    {
        int i = 0;
        while (i < s.Length)
        {
            i = SkipBws(s, i);
            if (i >= s.Length || s[i] != (byte)';') return false;
            i = SkipBws(s, i + 1);
            int start = i;
            while (i < s.Length && RequestHeadParser.IsTokenChar(s[i])) i++;
            if (i == start) return false;
            int eq = SkipBws(s, i);
            if (eq >= s.Length || s[eq] != (byte)'=') continue;
            i = SkipBws(s, eq + 1);
            if (i < s.Length && s[i] == (byte)'"')
            {
                for (i++; ; i++)
                {
                    if (i >= s.Length) return false;
                    byte b = s[i];
                    if (b == (byte)'"') { i++; break; }
                    if (b == (byte)'\\')
                    {
                        if (++i >= s.Length || !IsQuotable(s[i])) return false;
                    }
                    else if (!IsQuotable(b)) return false;
                }
            }
            else
            {
                start = i;
                while (i < s.Length && RequestHeadParser.IsTokenChar(s[i])) i++;
                if (i == start) return false;
            }
        }
        return true;
    }

    static int SkipBws(ReadOnlySpan<byte> s, int i)
    {
        while (i < s.Length && s[i] is (byte)' ' or (byte)'\t') i++;
        return i;
    }

    // qdtext and quoted-pair's second byte: HTAB, SP, visible ASCII, obs-text (the quote itself only escaped).
    static bool IsQuotable(byte b) => b == (byte)'\t' || (b >= 0x20 && b != 0x7f);

    static int HexValue(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
        _ => -1,
    };

    BodyException Fail(int status, string reason) => Failure = new BodyException(status, reason);
}

/// <summary>How a request body is delimited (RFC 9112 §6), shared by the session and its tests.</summary>
public static class RequestFraming
{
    /// <summary>
    /// Reads Content-Length and Transfer-Encoding. Anything ambiguous (both, a coding other than chunked, differing
    /// lengths) is an error: the connection must close, since the next request's start is unknown.
    /// </summary>
    public static HttpError? Check(RequestHead h, out long contentLength, out bool chunked)
    {
        contentLength = 0;
        chunked = false;
        var te = h.Get("Transfer-Encoding");
        int clCount = h.Count("Content-Length");
        if (te is not null)
        {
            if (clCount > 0) return new HttpError(400, "both Content-Length and Transfer-Encoding");
            if (h.MinorVersion == 0) return new HttpError(400, "Transfer-Encoding in an HTTP/1.0 request");
            if (!te.Trim().Equals("chunked", StringComparison.OrdinalIgnoreCase))
                return new HttpError(te.TrimEnd().EndsWith("chunked", StringComparison.OrdinalIgnoreCase) ? 501 : 400, $"unsupported transfer coding '{te}'");
            chunked = true;
            return null;
        }
        if (clCount == 0) return null;
        // All Content-Length values must be the same number (RFC 9112 §6.3).
        string? seen = null;
        foreach (var (k, v) in h.Headers)
        {
            if (!k.Equals("Content-Length", StringComparison.OrdinalIgnoreCase)) continue;
            foreach (var range in v.AsSpan().Split(','))
            {
                var part = v.AsSpan()[range].Trim();
                if (part.IsEmpty || part.Length > 18 || !IsDigits(part)) return new HttpError(400, "invalid Content-Length");
                if (seen is not null && !part.SequenceEqual(seen)) return new HttpError(400, "conflicting Content-Length values");
                seen ??= part.ToString();
            }
        }
        contentLength = long.Parse(seen!, System.Globalization.CultureInfo.InvariantCulture);
        return null;
    }

    static bool IsDigits(ReadOnlySpan<char> s)
    {
        foreach (var c in s)
            if (c is < '0' or > '9') return false;
        return true;
    }
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
