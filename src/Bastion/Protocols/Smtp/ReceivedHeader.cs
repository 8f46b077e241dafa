using System.Buffers;
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
    /// <remarks>Encoded straight into <paramref name="w"/> (the upstream's output): no string, builder or array per message.</remarks>
    public static void Write(IBufferWriter<byte> w, string helo, IPAddress client, string host, bool esmtp, bool tls, bool auth,
        string id, string? recipient, DateTimeOffset now)
    {
        var ip = client.IsIPv4MappedToIPv6 ? client.MapToIPv4() : client;
        w.Write("Received: from "u8);
        Encoding.UTF8.GetBytes(helo, w);
        w.Write(ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? " ([IPv6:"u8 : " (["u8);
        Span<byte> span = w.GetSpan(64);
        if (!ip.TryFormat(span, out int n)) throw new InvalidOperationException("address longer than 64 bytes");
        w.Advance(n);
        w.Write("])\r\n\tby "u8);
        Encoding.UTF8.GetBytes(host, w);
        w.Write(" (Bastion) with "u8);
        w.Write(esmtp ? "ESMTP"u8 : "SMTP"u8);
        if (tls) w.Write("S"u8);
        if (auth) w.Write("A"u8);
        w.Write(" id "u8);
        Encoding.UTF8.GetBytes(id, w);
        if (recipient is not null)
        {
            w.Write("\r\n\tfor <"u8);
            Encoding.UTF8.GetBytes(recipient, w);
            w.Write(">"u8);
        }
        w.Write("; "u8);
        span = w.GetSpan(40);
        n = WriteRfc5322Date(now, span);
        span[n++] = (byte)'\r';
        span[n++] = (byte)'\n';
        w.Advance(n);
    }

    /// <summary>`Tue, 25 Nov 2026 17:18:00 +0100` (RFC 5322 3.3), culture-free.</summary>
    public static string Rfc5322Date(DateTimeOffset t)
    {
        Span<byte> b = stackalloc byte[40];
        return Encoding.ASCII.GetString(b[..WriteRfc5322Date(t, b)]);
    }

    /// <summary><see cref="Rfc5322Date"/> as ASCII into <paramref name="into"/> (at least 32 bytes); the length written.</summary>
    static int WriteRfc5322Date(DateTimeOffset t, Span<byte> into)
    {
        if (!t.TryFormat(into, out int n, "ddd, dd MMM yyyy HH:mm:ss ", CultureInfo.InvariantCulture))
            throw new InvalidOperationException("date longer than its buffer");
        var off = t.Offset;
        into[n++] = off < TimeSpan.Zero ? (byte)'-' : (byte)'+';
        off = off.Duration();
        into[n++] = (byte)('0' + off.Hours / 10);
        into[n++] = (byte)('0' + off.Hours % 10);
        into[n++] = (byte)('0' + off.Minutes / 10);
        into[n++] = (byte)('0' + off.Minutes % 10);
        return n;
    }
}
