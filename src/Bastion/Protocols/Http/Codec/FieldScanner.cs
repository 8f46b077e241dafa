namespace Bastion.Protocols.Http.Codec;

/// <summary>
/// The field section of a head (RFC 9112 §5), shared by requests and responses: `name ":" OWS value OWS CRLF`
/// lines up to an empty line. Names are tokens (any other byte, anywhere in the name, is an error: no whitespace
/// before the colon), values hold no CTL but HTAB, lines end in CRLF (no bare CR or LF), and obsolete line folding
/// is refused. An unfinished last line is checked as far as it goes, so hopeless input fails at once.
/// </summary>
static class FieldScanner
{
    /// <summary>
    /// Scans from <paramref name="pos"/> (the start of a line) in <paramref name="s"/>, whose offsets become the
    /// head's. Complete: <paramref name="end"/> is just past the empty line.
    /// </summary>
    public static ParseResult Scan(ReadOnlySpan<byte> s, int pos, HttpHead head, int maxFields, int errorStatus,
        out int end, out HttpError error)
    {
        end = 0;
        error = default;
        while (true)
        {
            var rest = s[pos..];
            int lf = rest.IndexOf((byte)'\n');
            if (lf < 0) return CheckPartial(rest, errorStatus, out error) ? ParseResult.NeedMore : ParseResult.Invalid;
            if (lf == 0 || rest[lf - 1] != (byte)'\r')
            {
                error = new(errorStatus, "bare LF in the head");
                return ParseResult.Invalid;
            }
            var line = rest[..(lf - 1)];
            int lineEnd = pos + lf + 1;
            if (line.IsEmpty)
            {
                end = lineEnd;
                return ParseResult.Complete;
            }
            if (!CheckLine(line, errorStatus, out int colon, out int v0, out int v1, out error)) return ParseResult.Invalid;
            var id = KnownHeaders.Classify(line[..colon]);
            if (!head.AddField(pos, pos + colon, pos + v0, pos + v1, lineEnd, id, maxFields))
            {
                error = new(errorStatus == 400 ? 431 : errorStatus, "too many header fields");
                return ParseResult.Invalid;
            }
            pos = lineEnd;
        }
    }

    /// <summary>One complete field line without its CRLF. Gives the colon and the value's bounds without OWS.</summary>
    internal static bool CheckLine(ReadOnlySpan<byte> line, int status, out int colon, out int v0, out int v1, out HttpError error)
    {
        v0 = v1 = 0;
        colon = line.IndexOfAnyExcept(HttpChars.Token);
        if (!CheckName(line, colon, status, out error)) return false;
        if (colon < 0)
        {
            error = new(status, "header line without a colon");
            return false;
        }
        var value = line[(colon + 1)..];
        int bad = value.IndexOfAny(HttpChars.NotFieldValue);
        if (bad >= 0)
        {
            error = new(status, value[bad] == (byte)'\r' ? "bare CR in the head" : "invalid character in a header value");
            return false;
        }
        int a = colon + 1, b = line.Length;
        while (a < b && HttpChars.IsOws(line[a])) a++;
        while (b > a && HttpChars.IsOws(line[b - 1])) b--;
        v0 = a;
        v1 = b;
        return true;
    }

    /// <summary>
    /// The name part: <paramref name="stop"/> is the first non-token byte (-1: none yet). It must be a colon after
    /// at least one token byte.
    /// </summary>
    static bool CheckName(ReadOnlySpan<byte> line, int stop, int status, out HttpError error)
    {
        error = default;
        if (stop < 0) return true;
        byte b = line[stop];
        if (stop == 0 && HttpChars.IsOws(b))
        {
            error = new(status, "obsolete line folding (a line starting with whitespace)");
            return false;
        }
        if (b == (byte)':')
        {
            if (stop > 0) return true;
            error = new(status, "empty header name");
            return false;
        }
        error = new(status, HttpChars.IsOws(b) ? "whitespace before a header colon"
            : b == (byte)'\r' ? "bare CR in the head" : "invalid character in a header name");
        return false;
    }

    /// <summary>A line still arriving (no LF yet): what is there must be able to become a valid line.</summary>
    internal static bool CheckPartial(ReadOnlySpan<byte> part, int status, out HttpError error)
    {
        error = default;
        // A CR as the last byte so far may be the start of the line's CRLF.
        if (!part.IsEmpty && part[^1] == (byte)'\r') part = part[..^1];
        if (part.IsEmpty) return true;
        int stop = part.IndexOfAnyExcept(HttpChars.Token);
        if (!CheckName(part, stop, status, out error)) return false;
        if (stop < 0) return true;
        int bad = part[(stop + 1)..].IndexOfAny(HttpChars.NotFieldValue);
        if (bad < 0) return true;
        error = new(status, part[stop + 1 + bad] == (byte)'\r' ? "bare CR in the head" : "invalid character in a header value");
        return false;
    }
}
