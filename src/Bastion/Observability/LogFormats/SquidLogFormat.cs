using System.Buffers;
using Bastion.Configuration;

namespace Bastion.Observability.LogFormats;

/// <summary>
/// Squid's native access.log line (`logformat squid  %ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%&lt;a %mt`),
/// so that tools reading Squid logs (calamaris, SARG, lightsquid, GoAccess --log-format=SQUID) read Bastion's:
/// <code>1733231736.123     12 10.1.2.3 TCP_MISS/200 1591 GET http://example.com/ alice HIER_DIRECT/93.184.216.34 text/html</code>
/// Result codes: TCP_MISS (relayed), TCP_TUNNEL (CONNECT, socks5, tcp), TCP_DENIED (a deny: 403, 407, 429...),
/// TCP_MISS_ABORTED (the client went away), NONE_NONE (no request: a connection line, a malformed request).
/// </summary>
public sealed class SquidLogFormat : AccessLogFormat
{
    public override void Write(AccessEvent e, IBufferWriter<byte> output)
    {
        var line = new LogLine(output);
        var (method, target) = LogLine.SplitRequest(e.Request);
        line.EpochMillis(e.Ts);
        line.Char(' ');
        var elapsed = ((long)Math.Max(0, e.DurationMs)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        for (int i = elapsed.Length; i < 6; i++) line.Char(' ');
        line.Raw(elapsed);
        line.Char(' ');
        line.Raw(LogLine.ClientIp(e.Client));
        line.Char(' ');
        line.Raw(ResultCode(e, method));
        line.Char('/');
        line.Raw(e.Status.ToString("D3", System.Globalization.CultureInfo.InvariantCulture));
        line.Char(' ');
        line.Number(e.BytesOut);
        line.Char(' ');
        line.Word(method);
        line.Char(' ');
        line.Word(target);
        line.Char(' ');
        line.Word(e.User);
        line.Char(' ');
        if (LogLine.UpstreamHost(e.Upstream) is { } host)
        {
            line.Raw("HIER_DIRECT/"u8);
            line.Word(host);
        }
        else line.Raw("HIER_NONE/-"u8);
        line.Char(' ');
        // %mt: the media type, without parameters.
        var type = e.ContentType;
        if (type is not null && type.IndexOf(';') is int semi and >= 0) type = type[..semi].TrimEnd();
        line.Word(type);
    }

    static string ResultCode(AccessEvent e, string method)
    {
        if (e.Verdict == Verdict.Deny) return "TCP_DENIED";
        if (e.Status == 499) return "TCP_MISS_ABORTED";
        if (method is "CONNECT" or "TCP" || e.Type is "socks5" or "tcp") return e.Upstream is null && e.Verdict is null ? "NONE_NONE" : "TCP_TUNNEL";
        if (e.Verdict is null || e.Request is null) return "NONE_NONE";
        return "TCP_MISS";
    }
}
