using System.Globalization;
using System.Net;
using System.Text;

namespace Bastion.Protocols.Smtp;

/// <summary>The gateway's own trace header (RFC 5321 4.4), put in front of each message it relays.</summary>
public static class ReceivedHeader
{
    /// <param name="helo">The client's HELO/EHLO name.</param>
    /// <param name="client">The client's address (after a trusted PROXY header).</param>
    /// <param name="host">The gateway's name (the banner's first word).</param>
    /// <param name="esmtp">EHLO rather than HELO.</param>
    /// <param name="tls">The client leg was TLS.</param>
    /// <param name="id">The message's id, as logged.</param>
    /// <param name="recipient">The one recipient, named only when there is one (RFC 5321 7.2).</param>
    public static byte[] Build(string helo, IPAddress client, string host, bool esmtp, bool tls, bool auth, string id,
        string? recipient, DateTimeOffset now)
    {
        var ip = client.IsIPv4MappedToIPv6 ? client.MapToIPv4() : client;
        var literal = ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[IPv6:{ip}]" : $"[{ip}]";
        var with = (esmtp ? "ESMTP" : "SMTP") + (tls ? "S" : "") + (auth ? "A" : "");
        var sb = new StringBuilder(200);
        sb.Append("Received: from ").Append(helo).Append(" (").Append(literal).Append(")\r\n");
        sb.Append("\tby ").Append(host).Append(" (Bastion) with ").Append(with).Append(" id ").Append(id);
        if (recipient is not null) sb.Append("\r\n\tfor <").Append(recipient).Append('>');
        sb.Append("; ").Append(Rfc5322Date(now)).Append("\r\n");
        return Encoding.UTF8.GetBytes(sb.ToString());
    }

    /// <summary>`Tue, 25 Nov 2026 17:18:00 +0100` (RFC 5322 3.3), culture-free.</summary>
    public static string Rfc5322Date(DateTimeOffset t)
    {
        var off = t.Offset;
        var sign = off < TimeSpan.Zero ? '-' : '+';
        off = off.Duration();
        return t.ToString("ddd, dd MMM yyyy HH:mm:ss ", CultureInfo.InvariantCulture) + $"{sign}{off.Hours:00}{off.Minutes:00}";
    }
}
