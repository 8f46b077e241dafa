namespace Bastion.Protocols.Http.Codec;

/// <summary>
/// Chunked transfer coding (RFC 9112 §7.1) as a sans-I/O state machine that rewrites a buffer in place. It takes
/// received bytes and leaves in front of them either the same body in canonical chunked form (sizes in lower-case
/// hex without leading zeros, no extensions, no trailer fields) or only the data. Canonical framing is never longer
/// than what it replaces, so it fits where the input was. Strict: hex sizes (leading zeros allowed) of at most 15
/// significant digits, valid extensions (`;` name [= token / quoted-string], BWS allowed), CRLF everywhere,
/// trailer lines by the header field rules.
/// </summary>
public struct ChunkedDecoder
{
    /// <summary>Longest size line (with extensions) or trailer line accepted.</summary>
    public const int MaxLine = 8 * 1024;
    /// <summary>Most trailer bytes accepted in all.</summary>
    public const int MaxTrailers = 32 * 1024;

    enum State : byte { Size, Data, DataEnd, Trailer, Done }

    State _state;
    long _remaining;
    int _trailerBytes;

    /// <summary>Data bytes decoded so far (framing excluded).</summary>
    public long DataBytes { get; private set; }

    public readonly bool IsDone => _state == State.Done;

    public void Reset() => this = default;

    /// <summary>
    /// Decodes <paramref name="buffer"/> in place. Output goes to <c>buffer[..produced]</c>. Bytes from
    /// <paramref name="consumed"/> on were not taken: NeedMore leaves an unfinished framing line there (keep it and
    /// call again with more bytes after it); Complete leaves what follows the body (the next message).
    /// Errors carry <paramref name="errorStatus"/> (400 for requests, 502 for responses).
    /// </summary>
    public ParseResult Transform(Span<byte> buffer, bool dataOnly, out int consumed, out int produced, out HttpError error, int errorStatus = 400)
    {
        int r = 0, w = 0;
        error = default;
        var result = ParseResult.NeedMore;
        while (r < buffer.Length)
        {
            if (_state == State.Data)
            {
                int n = (int)Math.Min(_remaining, buffer.Length - r);
                if (w != r) buffer.Slice(r, n).CopyTo(buffer[w..]);
                r += n;
                w += n;
                _remaining -= n;
                DataBytes += n;
                if (_remaining == 0) _state = State.DataEnd;
                continue;
            }
            if (_state == State.DataEnd)
            {
                if (buffer[r] != (byte)'\r' || (r + 1 < buffer.Length && buffer[r + 1] != (byte)'\n'))
                {
                    error = new(errorStatus, "missing CRLF after chunk data");
                    result = ParseResult.Invalid;
                    break;
                }
                if (r + 1 == buffer.Length) break;
                if (!dataOnly)
                {
                    buffer[w++] = (byte)'\r';
                    buffer[w++] = (byte)'\n';
                }
                r += 2;
                _state = State.Size;
                continue;
            }
            if (_state == State.Done)
            {
                result = ParseResult.Complete;
                break;
            }
            // A framing line: a chunk size or a trailer line.
            var rest = buffer[r..];
            int lf = rest.IndexOf((byte)'\n');
            if (lf < 0)
            {
                if (!CheckPartialLine(rest, errorStatus, out error)) { result = ParseResult.Invalid; break; }
                break;
            }
            if (lf == 0 || rest[lf - 1] != (byte)'\r' || lf > MaxLine)
            {
                error = new(errorStatus, lf > MaxLine ? "chunk framing line too long" : "bare LF in chunked framing");
                result = ParseResult.Invalid;
                break;
            }
            var line = rest[..(lf - 1)];
            r += lf + 1;
            if (_state == State.Size)
            {
                if (!ParseSize(line, out long size, errorStatus, out error)) { result = ParseResult.Invalid; break; }
                if (!dataOnly) w += WriteSize(buffer[w..], size);
                _remaining = size;
                _state = size == 0 ? State.Trailer : State.Data;
                continue;
            }
            // Trailer section: checked like header fields, then dropped.
            if (line.IsEmpty)
            {
                if (!dataOnly)
                {
                    buffer[w++] = (byte)'\r';
                    buffer[w++] = (byte)'\n';
                }
                _state = State.Done;
                result = ParseResult.Complete;
                break;
            }
            _trailerBytes += lf + 1;
            if (_trailerBytes > MaxTrailers)
            {
                error = new(errorStatus, "trailer section too large");
                result = ParseResult.Invalid;
                break;
            }
            if (!FieldScanner.CheckLine(line, errorStatus, out _, out _, out _, out error)) { result = ParseResult.Invalid; break; }
        }
        consumed = r;
        produced = w;
        if (result == ParseResult.NeedMore && _state == State.Done) result = ParseResult.Complete;
        return result;
    }

    /// <summary>An unfinished framing line: fail at the first byte that can never be part of a valid one.</summary>
    readonly bool CheckPartialLine(ReadOnlySpan<byte> part, int status, out HttpError error)
    {
        error = default;
        if (part.Length > MaxLine)
        {
            error = new(status, "chunk framing line too long");
            return false;
        }
        if (_state == State.Trailer) return FieldScanner.CheckPartial(part, status, out error);
        if (HttpChars.HexValue(part[0]) < 0)
        {
            error = new(status, "bad chunk size");
            return false;
        }
        if (part[^1] == (byte)'\r') part = part[..^1];
        int bad = part.IndexOfAny(HttpChars.NotFieldValue);
        if (bad < 0) return true;
        error = new(status, part[bad] == (byte)'\r' ? "bare CR in chunked framing" : "bad chunk size");
        return false;
    }

    static bool ParseSize(ReadOnlySpan<byte> line, out long size, int status, out HttpError error)
    {
        size = 0;
        error = default;
        int n = 0;
        while (n < line.Length && HttpChars.HexValue(line[n]) >= 0) n++;
        if (n == 0)
        {
            error = new(status, "bad chunk size");
            return false;
        }
        int zeros = 0;
        while (zeros < n - 1 && line[zeros] == (byte)'0') zeros++;
        if (n - zeros > 15)
        {
            error = new(status, "chunk size too large");
            return false;
        }
        foreach (var b in line[zeros..n]) size = (size << 4) | (uint)HttpChars.HexValue(b);
        if (n < line.Length && !ValidExtensions(line[n..]))
        {
            error = new(status, "bad chunk extension");
            return false;
        }
        return true;
    }

    static int WriteSize(Span<byte> dest, long size)
    {
        int digits = 1;
        for (long v = size >> 4; v != 0; v >>= 4) digits++;
        for (int i = digits - 1; i >= 0; i--, size >>= 4)
        {
            int nibble = (int)(size & 0xf);
            dest[i] = (byte)(nibble < 10 ? '0' + nibble : 'a' + nibble - 10);
        }
        dest[digits] = (byte)'\r';
        dest[digits + 1] = (byte)'\n';
        return digits + 2;
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
            while (i < s.Length && HttpChars.IsToken(s[i])) i++;
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
                while (i < s.Length && HttpChars.IsToken(s[i])) i++;
                if (i == start) return false;
            }
        }
        return true;
    }

    static int SkipBws(ReadOnlySpan<byte> s, int i)
    {
        while (i < s.Length && HttpChars.IsOws(s[i])) i++;
        return i;
    }

    // qdtext and quoted-pair's second byte: HTAB, SP, visible ASCII, obs-text.
    static bool IsQuotable(byte b) => b == (byte)'\t' || (b >= 0x20 && b != 0x7f);
}

/// <summary>Chunked framing for data of unknown length (a close-delimited response relayed to an HTTP/1.1 client).</summary>
public static class ChunkedEncoder
{
    /// <summary>Room to leave before the data for its size line: 8 hex digits and CRLF (chunks below 4 GiB).</summary>
    public const int Prefix = 10;
    /// <summary>Room to leave after the data for its CRLF.</summary>
    public const int Suffix = 2;

    public static ReadOnlySpan<byte> LastChunk => "0\r\n\r\n"u8;

    /// <summary>
    /// Frames <paramref name="n"/> data bytes that sit at <c>buffer[Prefix..]</c>: writes the size line just before
    /// them and CRLF after. Returns where the chunk starts; it ends at <c>Prefix + n + Suffix</c>.
    /// </summary>
    public static int Frame(Span<byte> buffer, int n)
    {
        int digits = 1;
        for (int v = n >> 4; v != 0; v >>= 4) digits++;
        int start = Prefix - 2 - digits;
        int size = n;
        for (int i = Prefix - 3; i >= start; i--, size >>= 4)
        {
            int nibble = size & 0xf;
            buffer[i] = (byte)(nibble < 10 ? '0' + nibble : 'a' + nibble - 10);
        }
        buffer[Prefix - 2] = (byte)'\r';
        buffer[Prefix - 1] = (byte)'\n';
        buffer[Prefix + n] = (byte)'\r';
        buffer[Prefix + n + 1] = (byte)'\n';
        return start;
    }
}
