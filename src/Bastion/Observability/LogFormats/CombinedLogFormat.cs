using System.Buffers;

namespace Bastion.Observability.LogFormats;

/// <summary>
/// Apache's combined log line (`LogFormat "%h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-Agent}i\"" combined`),
/// which nginx writes by default too and GoAccess, AWStats and most log tools read:
/// <code>10.1.2.3 - alice [03/Dec/2026:13:55:36 +0000] "GET http://example.com/ HTTP/1.1" 200 1591 "-" "curl/8.5.0"</code>
/// %t is when the request started (as Apache writes it), in the gateway's local time; %b counts the bytes sent to the
/// client, response head included ("-" for none). Values from clients are escaped as Apache does (\", \\, \xhh).
/// </summary>
public sealed class CombinedLogFormat : AccessLogFormat
{
    public override void Write(AccessEvent e, IBufferWriter<byte> output)
    {
        var line = new LogLine(output);
        line.Raw(LogLine.ClientIp(e.Client));
        line.Raw(" - "u8);
        line.Word(e.User);
        line.Char(' ');
        line.ClfTime(e.Ts - TimeSpan.FromMilliseconds(Math.Max(0, e.DurationMs)));
        line.Raw(" \""u8);
        if (e.Request is null) line.Char('-');
        else
        {
            line.Escaped(e.Type == "http-reverse" ? OriginForm(e.Request) : e.Request);
            line.Char(' ');
            line.Escaped(e.Protocol);
        }
        line.Raw("\" "u8);
        if (e.Status > 0) line.Number(e.Status);
        else line.Char('-');
        line.Char(' ');
        if (e.BytesOut > 0) line.Number(e.BytesOut);
        else line.Char('-');
        line.Raw(" \""u8);
        line.Escaped(e.Referer);
        line.Raw("\" \""u8);
        line.Escaped(e.UserAgent);
        line.Char('"');
    }

    /// <summary>The reverse proxy logs `GET https://host/p?q`; its client sent `GET /p?q`, which is what %r shows.</summary>
    static string OriginForm(string request)
    {
        int scheme = request.IndexOf("://", StringComparison.Ordinal);
        if (scheme < 0) return request;
        int path = request.IndexOf('/', scheme + 3);
        int sp = request.IndexOf(' ');
        return path < 0 ? request[..(sp + 1)] + "/" : request[..(sp + 1)] + request[path..];
    }
}
