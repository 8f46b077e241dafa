using System.Buffers;
using Bastion.Configuration;

namespace Bastion.Observability.LogFormats;

/// <summary>
/// `logging.format: "{ts} {client_ip} {user} \"{request}\" {status} {bytes_out} {duration_ms}"`: literal text with
/// `{field}`s (`{{` and `}}` for braces). Fields are the JSON line's names plus a few derived ones (see
/// <see cref="Fields"/>); a field without a value is written `-`; text is escaped as in Apache's logs, so that a value
/// can never start a new line. Parsed once at load; an unknown field is a configuration error.
/// </summary>
public sealed class TemplateLogFormat : AccessLogFormat
{
    /// <summary>Every field a template may name, with what it writes.</summary>
    public static readonly Dictionary<string, string> Fields = new(StringComparer.Ordinal)
    {
        ["ts"] = "end time, RFC 3339 UTC with milliseconds",
        ["ts_epoch"] = "end time, seconds since 1970 with milliseconds (Squid's %ts.%03tu)",
        ["ts_clf"] = "start time as [10/Oct/2000:13:55:36 +0000], local time (Apache's %t)",
        ["event"] = "request, connection or transfer",
        ["id"] = "the request's or connection's id",
        ["conn"] = "the connection's id",
        ["listener"] = "the listener's name",
        ["type"] = "the listener's type",
        ["client"] = "ip:port",
        ["client_ip"] = "ip",
        ["user"] = "the user",
        ["request"] = "what was asked (GET http://h/p)",
        ["method"] = "the request's method or command",
        ["target"] = "the request's target (URL, host:port)",
        ["protocol"] = "HTTP/1.1, HTTP/2",
        ["verdict"] = "allow or deny",
        ["rule"] = "the rule that decided",
        ["reason"] = "its reason",
        ["status"] = "the status or reply code",
        ["upstream"] = "the target that served it",
        ["upstream_ms"] = "time to the upstream's answer, ms",
        ["tls"] = "TLS state",
        ["sni"] = "TLS server name",
        ["bytes_in"] = "bytes from the client",
        ["bytes_out"] = "bytes to the client",
        ["duration_ms"] = "duration, ms",
        ["referer"] = "the Referer header",
        ["user_agent"] = "the User-Agent header",
        ["content_type"] = "the response's media type",
    };

    readonly (string? Literal, string? Field)[] _parts;

    TemplateLogFormat((string?, string?)[] parts) => _parts = parts;

    public static TemplateLogFormat? ParseTemplate(string template, out string? error)
    {
        error = null;
        var parts = new List<(string?, string?)>();
        var literal = new System.Text.StringBuilder();
        for (int i = 0; i < template.Length; i++)
        {
            char c = template[i];
            if (c == '{' && i + 1 < template.Length && template[i + 1] == '{') { literal.Append('{'); i++; continue; }
            if (c == '}' && i + 1 < template.Length && template[i + 1] == '}') { literal.Append('}'); i++; continue; }
            if (c == '}') { error = $"logging.format: '}}' at {i + 1} closes nothing (write '}}}}' for a brace)"; return null; }
            if (c != '{') { literal.Append(c); continue; }
            int close = template.IndexOf('}', i + 1);
            if (close < 0) { error = $"logging.format: '{{' at {i + 1} is not closed"; return null; }
            var name = template[(i + 1)..close];
            if (!Fields.ContainsKey(name))
            {
                error = $"logging.format: unknown field '{{{name}}}'{Suggest.Hint(name, Fields.Keys)} (fields: {string.Join(", ", Fields.Keys)})";
                return null;
            }
            if (literal.Length > 0) parts.Add((literal.ToString(), null));
            literal.Clear();
            parts.Add((null, name));
            i = close;
        }
        if (literal.Length > 0) parts.Add((literal.ToString(), null));
        if (!parts.Any(p => p.Item2 is not null)) { error = "logging.format: the template names no {field}"; return null; }
        return new TemplateLogFormat([.. parts]);
    }

    public override void Write(AccessEvent e, IBufferWriter<byte> output)
    {
        var line = new LogLine(output);
        foreach (var (literal, field) in _parts)
        {
            if (literal is not null) { line.Raw(literal); continue; }
            switch (field)
            {
                case "ts": line.Rfc3339(e.Ts); break;
                case "ts_epoch": line.EpochMillis(e.Ts); break;
                case "ts_clf": line.ClfTime(e.Ts - TimeSpan.FromMilliseconds(Math.Max(0, e.DurationMs))); break;
                case "client_ip": line.Raw(LogLine.ClientIp(e.Client)); break;
                case "method": line.Escaped(e.Request is null ? null : LogLine.SplitRequest(e.Request).Method); break;
                case "target": line.Escaped(e.Request is null ? null : LogLine.SplitRequest(e.Request).Target); break;
                case "verdict": line.Escaped(e.Verdict switch { Verdict.Allow => "allow", Verdict.Deny => "deny", _ => null }); break;
                case "status": line.Number(e.Status); break;
                case "bytes_in": line.Number(e.BytesIn); break;
                case "bytes_out": line.Number(e.BytesOut); break;
                case "duration_ms": line.Raw(Math.Round(e.DurationMs, 3).ToString("0.###", System.Globalization.CultureInfo.InvariantCulture)); break;
                case "upstream_ms":
                    if (e.UpstreamMs is { } um) line.Raw(Math.Round(um, 3).ToString("0.###", System.Globalization.CultureInfo.InvariantCulture));
                    else line.Char('-');
                    break;
                default: line.Escaped(Text(e, field!)); break;
            }
        }
    }

    static string? Text(AccessEvent e, string field) => field switch
    {
        "event" => e.Event,
        "id" => e.Id,
        "conn" => e.Conn,
        "listener" => e.Listener,
        "type" => e.Type,
        "client" => e.Client,
        "user" => e.User,
        "request" => e.Request,
        "protocol" => e.Protocol,
        "rule" => e.Rule,
        "reason" => e.Reason,
        "upstream" => e.Upstream,
        "tls" => e.Tls,
        "sni" => e.Sni,
        "referer" => e.Referer,
        "user_agent" => e.UserAgent,
        "content_type" => e.ContentType,
        _ => null,
    };
}
