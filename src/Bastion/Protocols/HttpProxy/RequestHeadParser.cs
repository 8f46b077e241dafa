using System.Buffers;
using System.Text;

namespace Bastion.Protocols.HttpProxy;

public enum ParseStatus { NeedMore, Done, Error }

/// <summary>An HTTP error found while parsing: the status to answer and why (the session closes after it).</summary>
public readonly record struct HttpError(int Status, string Reason);

/// <summary>
/// A strict, sans-I/O HTTP/1.x request head parser over a <see cref="ReadOnlySequence{T}"/>. It refuses what
/// request-smuggling attacks rely on: obsolete line folding, whitespace before a header colon, bare CR or LF
/// line ends, control characters in values, and over-long heads.
/// </summary>
public static class RequestHeadParser
{
    static ReadOnlySpan<byte> CrLfCrLf => "\r\n\r\n"u8;

    /// <summary>
    /// Parses a complete head if the buffer holds one. <paramref name="consumed"/> is where the body starts.
    /// An incomplete head is checked as far as it goes, so that hopeless input fails at once instead of at the
    /// header timeout.
    /// </summary>
    public static ParseStatus TryParse(ReadOnlySequence<byte> buffer, int maxHeadSize, RequestHead head,
        out SequencePosition consumed, out HttpError error)
    {
        consumed = buffer.Start;
        error = default;
        var reader = new SequenceReader<byte>(buffer);
        // RFC 9112 §2.2: ignore at least one empty line before the request line.
        while (reader.IsNext("\r\n"u8, advancePast: true)) { }
        var start = reader.Position;
        if (!reader.TryReadTo(out ReadOnlySequence<byte> headBytes, CrLfCrLf, advancePastDelimiter: true))
        {
            if (buffer.Length > maxHeadSize)
            {
                error = new HttpError(431, "request head too large");
                return ParseStatus.Error;
            }
            return CheckPartial(buffer.Slice(start), out error) ? ParseStatus.NeedMore : ParseStatus.Error;
        }
        if (headBytes.Length + 4 > maxHeadSize)
        {
            error = new HttpError(431, "request head too large");
            return ParseStatus.Error;
        }
        consumed = reader.Position;
        head.Clear();
        head.HeadLength = (int)headBytes.Length + 4;

        byte[]? rented = null;
        Span<byte> span = headBytes.Length <= 8192
            ? stackalloc byte[(int)headBytes.Length]
            : (rented = ArrayPool<byte>.Shared.Rent((int)headBytes.Length)).AsSpan(0, (int)headBytes.Length);
        try
        {
            headBytes.CopyTo(span);
            return ParseHead(span, head, out error);
        }
        finally
        {
            if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
        }
    }

    static ParseStatus ParseHead(ReadOnlySpan<byte> s, RequestHead head, out HttpError error)
    {
        int eol = s.IndexOf("\r\n"u8);
        var line = eol < 0 ? s : s[..eol];
        if (!CheckRequestLine(line, out var method, out var target, out var minor, out error)) return ParseStatus.Error;
        head.Method = KnownHeaders.Method(method);
        head.Target = Encoding.ASCII.GetString(target);
        head.MinorVersion = minor;
        var rest = eol < 0 ? ReadOnlySpan<byte>.Empty : s[(eol + 2)..];
        while (!rest.IsEmpty)
        {
            eol = rest.IndexOf("\r\n"u8);
            line = eol < 0 ? rest : rest[..eol];
            rest = eol < 0 ? ReadOnlySpan<byte>.Empty : rest[(eol + 2)..];
            if (line.IsEmpty) continue;
            if (!CheckHeaderLine(line, out int colon, out error)) return ParseStatus.Error;
            head.Headers.Add(new(KnownHeaders.Name(line[..colon]), Latin1(Trim(line[(colon + 1)..]))));
        }
        return ParseStatus.Done;
    }

    /// <summary>
    /// Checks the part of a head received so far: no bare CR or LF, a valid request line and valid header lines
    /// once they are complete, and no line folding. True while the head can still turn out valid.
    /// </summary>
    static bool CheckPartial(ReadOnlySequence<byte> partial, out HttpError error)
    {
        error = default;
        if (partial.IsEmpty) return true;
        byte[]? rented = null;
        int len = (int)partial.Length;
        Span<byte> s = len <= 8192 ? stackalloc byte[len] : (rented = ArrayPool<byte>.Shared.Rent(len)).AsSpan(0, len);
        try
        {
            partial.CopyTo(s);
            for (int i = s.IndexOfAny((byte)'\r', (byte)'\n'); i >= 0;)
            {
                if (s[i] == (byte)'\n' || (i + 1 < s.Length && s[i + 1] != (byte)'\n'))
                {
                    error = new HttpError(400, "bare CR or LF in the request head");
                    return false;
                }
                i += 2;
                if (i >= s.Length) break;
                int next = s[i..].IndexOfAny((byte)'\r', (byte)'\n');
                i = next < 0 ? -1 : i + next;
            }
            int eol = s.IndexOf("\r\n"u8);
            if (eol < 0) return true;
            if (!CheckRequestLine(s[..eol], out _, out _, out _, out error)) return false;
            var rest = s[(eol + 2)..];
            while (!rest.IsEmpty)
            {
                eol = rest.IndexOf("\r\n"u8);
                if (eol < 0)
                {
                    // A line still arriving: folding already shows in its first byte.
                    if (rest[0] is (byte)' ' or (byte)'\t')
                    {
                        error = new HttpError(400, "obsolete line folding in headers");
                        return false;
                    }
                    return true;
                }
                if (!CheckHeaderLine(rest[..eol], out _, out error)) return false;
                rest = rest[(eol + 2)..];
            }
            return true;
        }
        finally
        {
            if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
        }
    }

    static bool CheckHeaderLine(ReadOnlySpan<byte> line, out int colon, out HttpError error)
    {
        error = default;
        colon = -1;
        if (line.IsEmpty) return true;
        if (line[0] is (byte)' ' or (byte)'\t')
        {
            error = new HttpError(400, "obsolete line folding in headers");
            return false;
        }
        colon = line.IndexOf((byte)':');
        if (colon <= 0)
        {
            error = new HttpError(400, "malformed header line");
            return false;
        }
        foreach (var b in line[..colon])
        {
            if (!IsTokenChar(b))
            {
                error = new HttpError(400, b is (byte)' ' or (byte)'\t' ? "whitespace before header colon" : "invalid character in header name");
                return false;
            }
        }
        foreach (var b in Trim(line[(colon + 1)..]))
        {
            if ((b < 0x20 && b != (byte)'\t') || b == 0x7f)
            {
                error = new HttpError(400, "invalid character in header value");
                return false;
            }
        }
        return true;
    }

    static bool CheckRequestLine(ReadOnlySpan<byte> line, out ReadOnlySpan<byte> method, out ReadOnlySpan<byte> target,
        out int minor, out HttpError error)
    {
        error = new HttpError(400, "malformed request line");
        method = target = default;
        minor = 1;
        int sp1 = line.IndexOf((byte)' ');
        if (sp1 <= 0) return false;
        int sp2 = line[(sp1 + 1)..].IndexOf((byte)' ');
        if (sp2 <= 0) return false;
        sp2 += sp1 + 1;
        method = line[..sp1];
        target = line[(sp1 + 1)..sp2];
        var version = line[(sp2 + 1)..];
        foreach (var b in method)
            if (!IsTokenChar(b)) return false;
        foreach (var b in target)
            if (b <= 0x20 || b >= 0x7f) return false;
        if (version.SequenceEqual("HTTP/1.1"u8)) minor = 1;
        else if (version.SequenceEqual("HTTP/1.0"u8)) minor = 0;
        else
        {
            if (version.StartsWith("HTTP/"u8)) error = new HttpError(505, "HTTP version not supported");
            return false;
        }
        error = default;
        return true;
    }

    static ReadOnlySpan<byte> Trim(ReadOnlySpan<byte> s)
    {
        while (!s.IsEmpty && s[0] is (byte)' ' or (byte)'\t') s = s[1..];
        while (!s.IsEmpty && s[^1] is (byte)' ' or (byte)'\t') s = s[..^1];
        return s;
    }

    static string Latin1(ReadOnlySpan<byte> s) => s.IsEmpty ? "" : Encoding.Latin1.GetString(s);

    // RFC 9110 §5.6.2 tchar.
    internal static bool IsTokenChar(byte b) =>
        b is >= (byte)'a' and <= (byte)'z' or >= (byte)'A' and <= (byte)'Z' or >= (byte)'0' and <= (byte)'9'
            or (byte)'!' or (byte)'#' or (byte)'$' or (byte)'%' or (byte)'&' or (byte)'\'' or (byte)'*' or (byte)'+'
            or (byte)'-' or (byte)'.' or (byte)'^' or (byte)'_' or (byte)'`' or (byte)'|' or (byte)'~';
}

/// <summary>Common methods and header names as shared strings, so parsing them allocates nothing.</summary>
static class KnownHeaders
{
    static readonly string[] Methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

    static readonly string[] Names =
    [
        "Host", "User-Agent", "Accept", "Accept-Encoding", "Accept-Language", "Connection", "Proxy-Connection",
        "Keep-Alive", "Content-Length", "Content-Type", "Transfer-Encoding", "Proxy-Authorization", "Authorization",
        "Cookie", "Referer", "Origin", "Cache-Control", "Pragma", "If-None-Match", "If-Modified-Since", "Range",
        "Expect", "TE", "Trailer", "Upgrade", "Via", "Max-Forwards", "X-Forwarded-For", "Sec-Fetch-Mode",
        "Sec-Fetch-Site", "Sec-Fetch-Dest", "Upgrade-Insecure-Requests", "DNT", "Content-Encoding",
    ];

    static readonly Dictionary<string, string>.AlternateLookup<ReadOnlySpan<char>> NameLookup =
        Names.ToDictionary(n => n, n => n, StringComparer.OrdinalIgnoreCase).GetAlternateLookup<ReadOnlySpan<char>>();

    public static string Method(ReadOnlySpan<byte> m)
    {
        foreach (var k in Methods)
            if (m.Length == k.Length && Ascii.Equals(m, k)) return k;
        return Encoding.ASCII.GetString(m);
    }

    public static string Name(ReadOnlySpan<byte> n)
    {
        if (n.Length <= 64)
        {
            Span<char> chars = stackalloc char[n.Length];
            for (int i = 0; i < n.Length; i++) chars[i] = (char)n[i];
            // Only reuse the shared string when the case matches too, so names cross unchanged.
            if (NameLookup.TryGetValue(chars, out var known) && chars.SequenceEqual(known)) return known;
        }
        return Encoding.ASCII.GetString(n);
    }
}
