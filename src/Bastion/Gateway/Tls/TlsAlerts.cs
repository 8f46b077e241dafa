using System.Text.RegularExpressions;

namespace Bastion.Gateway.Tls;

/// <summary>Names the TLS alert inside a failed handshake's exception, for the log line of a client that refused us.</summary>
public static partial class TlsAlerts
{
    public static string Describe(Exception e)
    {
        for (var x = e; x is not null; x = x.InnerException)
        {
            // OpenSSL: "SSL alert number 48" / "tlsv1 alert unknown ca"; .NET: "... TLS alert: 'UnknownCA'".
            var m = AlertText().Match(x.Message);
            if (!m.Success) continue;
            // Named as RFC 8446 §6 does: unknown_ca, bad_certificate...
            var name = m.Groups[1].Success ? Snake(m.Groups[1].Value)
                : m.Groups[2].Success ? m.Groups[2].Value.Trim().Replace(' ', '_')
                : Name(int.Parse(m.Groups[3].Value, System.Globalization.CultureInfo.InvariantCulture));
            return $"TLS alert '{name}'";
        }
        var inner = e;
        while (inner.InnerException is not null) inner = inner.InnerException;
        return inner is IOException or System.Net.Sockets.SocketException && inner.Message.Length > 0
            ? $"no TLS alert, the connection ended: {inner.Message}"
            : inner.Message;
    }

    static string Snake(string camel) => CamelBoundary().Replace(camel, "$1_$2").ToLowerInvariant();

    [GeneratedRegex("([a-z])([A-Z])")]
    private static partial Regex CamelBoundary();

    static string Name(int code) => code switch
    {
        0 => "close_notify",
        10 => "unexpected_message",
        40 => "handshake_failure",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        48 => "unknown_ca",
        70 => "protocol_version",
        80 => "internal_error",
        90 => "user_canceled",
        112 => "unrecognized_name",
        120 => "no_application_protocol",
        _ => code.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    [GeneratedRegex(@"TLS alert: '([A-Za-z]+)'|tlsv1[0-9.]* alert ([a-z ]+)|SSL alert number (\d+)")]
    private static partial Regex AlertText();
}
