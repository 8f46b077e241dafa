using System.Buffers;
using System.Text.Json;
using Bastion.Configuration;

namespace Bastion.Observability.LogFormats;

/// <summary>
/// SPEC 5's JSON object per line. Every line has the common fields in one order (null or 0 where they do not
/// apply); `upstream_ms`, `tls` and `sni` appear only where they apply. See docs/access-log.md.
/// </summary>
public sealed class JsonLogFormat : AccessLogFormat
{
    // Relaxed escaping: a log line is not HTML, and "RCPT TO:<a@b>" should read as written.
    static readonly JsonWriterOptions Options = new()
    {
        SkipValidation = true,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    Utf8JsonWriter? _json;

    public override void Write(AccessEvent e, IBufferWriter<byte> output)
    {
        if (_json is null) _json = new Utf8JsonWriter(output, Options);
        else _json.Reset(output);
        var w = _json;
        w.WriteStartObject();
        Span<char> ts = stackalloc char[32];
        e.Ts.ToUniversalTime().TryFormat(ts, out int n, "yyyy-MM-dd'T'HH:mm:ss.fff'Z'", System.Globalization.CultureInfo.InvariantCulture);
        w.WriteString("ts", ts[..n]);
        w.WriteString("event", e.Event);
        w.WriteString("id", e.Id);
        w.WriteString("conn", e.Conn);
        w.WriteString("listener", e.Listener);
        w.WriteString("type", e.Type);
        w.WriteString("client", e.Client);
        w.WriteString("user", e.User);
        w.WriteString("request", e.Request);
        w.WriteString("verdict", e.Verdict switch { Verdict.Allow => "allow", Verdict.Deny => "deny", _ => null });
        w.WriteString("rule", e.Rule);
        w.WriteString("reason", e.Reason);
        w.WriteNumber("status", e.Status);
        w.WriteString("upstream", e.Upstream);
        if (e.UpstreamMs is { } um) w.WriteNumber("upstream_ms", Math.Round(um, 3));
        if (e.Tls is not null) w.WriteString("tls", e.Tls);
        if (e.Sni is not null) w.WriteString("sni", e.Sni);
        w.WriteNumber("bytes_in", e.BytesIn);
        w.WriteNumber("bytes_out", e.BytesOut);
        w.WriteNumber("duration_ms", Math.Round(e.DurationMs, 3));
        w.WriteEndObject();
        w.Flush();
    }
}
