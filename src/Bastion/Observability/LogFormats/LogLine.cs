using System.Buffers;
using System.Globalization;
using System.Text;

namespace Bastion.Observability.LogFormats;

/// <summary>
/// Writes the pieces of a text log line as UTF-8, and takes apart the event's fields the way Squid and Apache
/// lines need them (client IP without port, method and target, upstream host).
/// </summary>
public readonly ref struct LogLine(IBufferWriter<byte> output)
{
    public void Raw(ReadOnlySpan<char> s)
    {
        if (s.IsEmpty) return;
        var span = output.GetSpan(Encoding.UTF8.GetMaxByteCount(s.Length));
        output.Advance(Encoding.UTF8.GetBytes(s, span));
    }

    public void Raw(ReadOnlySpan<byte> utf8) => output.Write(utf8);

    public void Char(char c)
    {
        var span = output.GetSpan(1);
        span[0] = (byte)c;
        output.Advance(1);
    }

    public void Number(long n)
    {
        var span = output.GetSpan(20);
        n.TryFormat(span, out int written, default, CultureInfo.InvariantCulture);
        output.Advance(written);
    }

    /// <summary>
    /// Text that came from clients or servers, escaped as Apache's mod_log_config does: `"` and `\` become `\"` and
    /// `\\`, control characters and bytes above 0x7E `\xhh` (a char up to 0xFF is a byte, as header values are read
    /// as Latin-1; above, its UTF-8 bytes), so that a value can neither end its field nor start a new line, and the
    /// line stays ASCII. "-" when empty.
    /// </summary>
    public void Escaped(string? s)
    {
        if (string.IsNullOrEmpty(s)) { Char('-'); return; }
        int start = 0;
        Span<byte> utf8 = stackalloc byte[4];
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c >= ' ' && c < '\x7f' && c != '"' && c != '\\') continue;
            Raw(s.AsSpan(start, i - start));
            if (c == '"') Raw("\\\""u8);
            else if (c == '\\') Raw("\\\\"u8);
            else if (c <= '\xff')
            {
                // Header values are read as Latin-1: a char up to 0xFF is the byte that was received.
                Raw("\\x"u8);
                Raw(((int)c).ToString("x2", CultureInfo.InvariantCulture));
            }
            else
            {
                int chars = char.IsHighSurrogate(c) && i + 1 < s.Length ? 2 : 1;
                int n = Encoding.UTF8.GetBytes(s.AsSpan(i, chars), utf8);
                for (int k = 0; k < n; k++)
                {
                    Raw("\\x"u8);
                    Raw(utf8[k].ToString("x2", CultureInfo.InvariantCulture));
                }
                i += chars - 1;
            }
            start = i + 1;
        }
        Raw(s.AsSpan(start));
    }

    /// <summary>A single word (Squid's fields are space-separated): spaces and controls escaped too.</summary>
    public void Word(string? s)
    {
        if (string.IsNullOrEmpty(s)) { Char('-'); return; }
        if (s.AsSpan().IndexOfAny(" \"\\\x7f") < 0 && !HasControl(s)) { Raw(s); return; }
        foreach (var c in s)
        {
            if (c > ' ' && c != '"' && c != '\\' && c != '\x7f') { Raw([c]); continue; }
            Raw(c switch { '"' => "\\\"", '\\' => "\\\\", _ => "%" + ((int)c).ToString("X2", CultureInfo.InvariantCulture) });
        }
    }

    static bool HasControl(string s)
    {
        foreach (var c in s) if (c < ' ') return true;
        return false;
    }

    /// <summary>"1.2.3.4:5" → "1.2.3.4", "[::1]:5" → "::1".</summary>
    public static ReadOnlySpan<char> ClientIp(string? client)
    {
        if (string.IsNullOrEmpty(client)) return "-";
        var s = client.AsSpan();
        if (s[0] == '[')
        {
            int close = s.IndexOf(']');
            return close > 0 ? s[1..close] : s;
        }
        int colon = s.LastIndexOf(':');
        return colon > 0 && s[..colon].IndexOf(':') < 0 ? s[..colon] : s;
    }

    /// <summary>"GET http://h/p" → (GET, http://h/p); "TCP h:5432" → (TCP, h:5432); "h:443" → (CONNECT, h:443).</summary>
    public static (string Method, string Target) SplitRequest(string? request)
    {
        if (string.IsNullOrEmpty(request)) return ("NONE", "-");
        int sp = request.IndexOf(' ');
        return sp > 0 ? (request[..sp], request[(sp + 1)..]) : ("CONNECT", request);
    }

    /// <summary>The upstream's host: from a URL (http://h:p), host:port or [v6]:port.</summary>
    public static string? UpstreamHost(string? upstream)
    {
        if (string.IsNullOrEmpty(upstream)) return null;
        if (upstream.Contains("://", StringComparison.Ordinal) && Uri.TryCreate(upstream, UriKind.Absolute, out var u))
            return u.HostNameType == UriHostNameType.IPv6 ? u.Host.Trim('[', ']') : u.Host;
        return ClientIp(upstream).ToString();
    }

    /// <summary>Apache's %t: `[10/Oct/2000:13:55:36 -0700]` in the gateway's local time.</summary>
    public void ClfTime(DateTime utc)
    {
        var local = utc.ToLocalTime();
        var offset = TimeZoneInfo.Local.GetUtcOffset(local);
        Span<char> buf = stackalloc char[40];
        local.TryFormat(buf, out int n, "'['dd'/'MMM'/'yyyy':'HH':'mm':'ss' '", CultureInfo.InvariantCulture);
        Raw(buf[..n]);
        Char(offset < TimeSpan.Zero ? '-' : '+');
        var abs = offset.Duration();
        Raw(((abs.Hours * 100) + abs.Minutes).ToString("D4", CultureInfo.InvariantCulture));
        Char(']');
    }

    /// <summary>Squid's %ts.%03tu: seconds since the epoch and milliseconds.</summary>
    public void EpochMillis(DateTime utc)
    {
        long ms = (long)(utc.ToUniversalTime() - DateTime.UnixEpoch).TotalMilliseconds;
        Number(ms / 1000);
        Char('.');
        Raw((ms % 1000).ToString("D3", CultureInfo.InvariantCulture));
    }

    /// <summary>RFC 3339 in UTC with milliseconds, as the JSON lines write it.</summary>
    public void Rfc3339(DateTime utc)
    {
        Span<char> buf = stackalloc char[32];
        utc.ToUniversalTime().TryFormat(buf, out int n, "yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
        Raw(buf[..n]);
    }
}
