using System.Net;
using System.Text;
using Bastion.Configuration;

namespace Bastion.Protocols.Ftp;

/// <summary>
/// `USER name@host[:port]` (the ftp-proxy/frox convention) when no upstream is configured: the client names the
/// server. The last '@' splits, so a name may itself hold one (`anonymous@example.org@ftp.example.net`).
/// </summary>
public static class FtpUserTarget
{
    public static bool TryParse(ReadOnlySpan<byte> arg, out string? user, out HostPort? target, out string? error)
    {
        user = null;
        target = null;
        int at = arg.LastIndexOf((byte)'@');
        if (at <= 0 || at == arg.Length - 1)
        {
            error = "no server named (user@host[:port])";
            return false;
        }
        if (!System.Text.Unicode.Utf8.IsValid(arg))
        {
            error = "not valid UTF-8";
            return false;
        }
        user = Encoding.UTF8.GetString(arg[..at]);
        var hostPart = Encoding.ASCII.GetString(arg[(at + 1)..]);
        string host;
        int port = 21;
        if (hostPart.StartsWith('['))
        {
            int close = hostPart.IndexOf(']');
            if (close < 0) { error = "unterminated [IPv6] address"; return false; }
            host = hostPart[1..close];
            var rest = hostPart[(close + 1)..];
            if (rest.Length > 0 && (rest[0] != ':' || !TryPort(rest[1..], out port))) { error = "bad port"; return false; }
            if (!IPAddress.TryParse(host, out var ip6) || ip6.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
            {
                error = "bad IPv6 address";
                return false;
            }
            host = ip6.ToString();
        }
        else
        {
            int colon = hostPart.IndexOf(':');
            host = colon < 0 ? hostPart : hostPart[..colon];
            if (colon >= 0 && !TryPort(hostPart[(colon + 1)..], out port)) { error = "bad port"; return false; }
            // The one form judged and resolved (SPEC 2.1): lowercase, no trailing dot, IPv4 shorthands as addresses.
            if (!Policy.Canonical.HostName.TryNormalize(host, out var normalized, out _) || (!IsHostName(normalized) && !IPAddress.TryParse(normalized, out _)))
            {
                error = "bad host name";
                return false;
            }
            host = normalized;
        }
        target = new HostPort(host, port);
        error = null;
        return true;
    }

    static bool TryPort(string s, out int port) =>
        int.TryParse(s, System.Globalization.NumberStyles.None, null, out port) && port is > 0 and <= 65535;

    /// <summary>Letters, digits, '-' and '.', in labels of 1-63 characters (RFC 1123).</summary>
    static bool IsHostName(string h)
    {
        if (h.Length is 0 or > 253) return false;
        foreach (var label in h.TrimEnd('.').Split('.'))
        {
            if (label.Length is 0 or > 63 || label[0] == '-' || label[^1] == '-') return false;
            foreach (var c in label)
                if (!char.IsAsciiLetterOrDigit(c) && c != '-') return false;
        }
        return true;
    }
}
