using System.Buffers;

namespace Bastion.Protocols.Http.Codec;

/// <summary>
/// The strict, sans-I/O HTTP/1.x request head parser: bytes in, <see cref="ParseResult"/> out, never an exception.
/// Request line `method SP target SP HTTP/1.x CRLF` (single spaces, method a token, target visible ASCII),
/// empty lines before it ignored (RFC 9112 §2.2), then <see cref="FieldScanner"/>'s field rules, then the head's
/// meaning: Host (exactly one on HTTP/1.1, valid, no userinfo), target form, framing and Connection.
/// </summary>
public static class RequestParser
{
    public const int DefaultMaxFields = 256;

    /// <summary>Parses a head from contiguous bytes. Complete: <paramref name="consumed"/> is where the body starts.</summary>
    public static ParseResult TryParse(ReadOnlySpan<byte> input, RequestHead head, int maxHeadSize, out int consumed,
        out HttpError error, int maxFields = DefaultMaxFields)
    {
        consumed = 0;
        int start = 0;
        // RFC 9112 §2.2: empty lines (CRLF) before the request line are ignored.
        while (start + 1 < input.Length && input[start] == (byte)'\r' && input[start + 1] == (byte)'\n') start += 2;
        var s = input[start..];
        head.Reset();
        if (start > maxHeadSize)
        {
            error = HttpError.Bad("too many empty lines before the request line");
            return ParseResult.Invalid;
        }
        if (s.Length == 1 && s[0] == (byte)'\r')
        {
            error = default;
            return ParseResult.NeedMore;
        }
        var result = ParseHead(s, head, maxHeadSize, maxFields, out int end, out error);
        if (result == ParseResult.NeedMore && input.Length > maxHeadSize + start)
        {
            error = new HttpError(431, "request head too large");
            return ParseResult.Invalid;
        }
        if (result != ParseResult.Complete) return result;
        head.SetBytes(s[..end]);
        head.WireLength = start + end;
        if (!head.Interpret(out error)) return ParseResult.Invalid;
        consumed = start + end;
        return ParseResult.Complete;
    }

    /// <summary>The same over a sequence (pipes): a multi-segment head is copied once into the head's own buffer.</summary>
    public static ParseResult TryParse(ReadOnlySequence<byte> input, RequestHead head, int maxHeadSize, out SequencePosition consumed,
        out HttpError error, int maxFields = DefaultMaxFields)
    {
        consumed = input.Start;
        if (input.IsSingleSegment)
        {
            var r = TryParse(input.FirstSpan, head, maxHeadSize, out int n, out error, maxFields);
            if (r == ParseResult.Complete) consumed = input.GetPosition(n);
            return r;
        }
        // Bounded: anything past the size limit (plus the empty lines a client may send first) cannot matter.
        int take = (int)Math.Min(input.Length, maxHeadSize + 1024L);
        var scratch = head.Scratch(take).AsSpan(0, take);
        input.Slice(0, take).CopyTo(scratch);
        var res = TryParse(scratch, head, maxHeadSize, out int used, out error, maxFields);
        if (res == ParseResult.NeedMore && input.Length > take)
        {
            error = new HttpError(431, "request head too large");
            return ParseResult.Invalid;
        }
        if (res == ParseResult.Complete) consumed = input.GetPosition(used);
        return res;
    }

    static ParseResult ParseHead(ReadOnlySpan<byte> s, RequestHead head, int maxHeadSize, int maxFields, out int end, out HttpError error)
    {
        end = 0;
        int lf = s.IndexOf((byte)'\n');
        if (lf < 0) return CheckPartialRequestLine(s, out error) ? ParseResult.NeedMore : ParseResult.Invalid;
        if (lf == 0 || s[lf - 1] != (byte)'\r')
        {
            error = HttpError.Bad("bare LF in the head");
            return ParseResult.Invalid;
        }
        if (!ParseRequestLine(s[..(lf - 1)], head, out error)) return ParseResult.Invalid;
        head.FieldsStart = lf + 1;
        var r = FieldScanner.Scan(s, lf + 1, head, maxFields, 400, out end, out error);
        if (r == ParseResult.Complete && end > maxHeadSize)
        {
            error = new HttpError(431, "request head too large");
            return ParseResult.Invalid;
        }
        return r;
    }

    static bool ParseRequestLine(ReadOnlySpan<byte> line, RequestHead head, out HttpError error)
    {
        error = HttpError.Bad("malformed request line");
        int sp1 = line.IndexOfAnyExcept(HttpChars.Token);
        if (sp1 <= 0 || line[sp1] != (byte)' ') return false;
        int t0 = sp1 + 1;
        int sp2 = t0;
        while (sp2 < line.Length && HttpChars.IsTargetByte(line[sp2])) sp2++;
        if (sp2 == t0 || sp2 >= line.Length || line[sp2] != (byte)' ') return false;
        var version = line[(sp2 + 1)..];
        int minor;
        if (version.SequenceEqual("HTTP/1.1"u8)) minor = 1;
        else if (version.SequenceEqual("HTTP/1.0"u8)) minor = 0;
        else
        {
            if (version.Length == 8 && version.StartsWith("HTTP/"u8) && HttpChars.IsDigit(version[5]) && version[6] == (byte)'.' && HttpChars.IsDigit(version[7]))
                error = new HttpError(505, "HTTP version not supported");
            return false;
        }
        head.SetRequestLine(line[..sp1], t0, sp2, minor);
        error = default;
        return true;
    }

    /// <summary>The request line so far (no LF yet) must still be able to become a valid one.</summary>
    static bool CheckPartialRequestLine(ReadOnlySpan<byte> s, out HttpError error)
    {
        error = HttpError.Bad("malformed request line");
        int sp1 = s.IndexOfAnyExcept(HttpChars.Token);
        if (sp1 < 0) return true;
        if (sp1 == 0 || s[sp1] != (byte)' ') return PartialCr(s, sp1, ref error);
        int i = sp1 + 1;
        while (i < s.Length && HttpChars.IsTargetByte(s[i])) i++;
        if (i == s.Length) return true;
        if (i == sp1 + 1 || s[i] != (byte)' ') return PartialCr(s, i, ref error);
        var v = s[(i + 1)..];
        if (!v.IsEmpty && v[^1] == (byte)'\r') v = v[..^1];
        if (v.Length > 8) return false;
        ReadOnlySpan<byte> shape = "HTTP/0.0"u8;
        for (int k = 0; k < v.Length; k++)
        {
            bool ok = shape[k] == (byte)'0' ? HttpChars.IsDigit(v[k]) : v[k] == shape[k];
            if (!ok) return false;
        }
        return true;
    }

    static bool PartialCr(ReadOnlySpan<byte> s, int at, ref HttpError error)
    {
        if (s[at] == (byte)'\r') error = HttpError.Bad(at == s.Length - 1 ? "malformed request line" : "bare CR in the head");
        return false;
    }
}
