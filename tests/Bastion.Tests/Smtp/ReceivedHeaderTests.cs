using System.Buffers;
using System.Net;
using System.Text;
using Bastion.Protocols.Smtp;

namespace Bastion.Tests.Smtp;

/// <summary>The trace header written straight into the upstream's output: the exact bytes of RFC 5321 4.4's form.</summary>
public class ReceivedHeaderTests
{
    static string Write(string helo, string ip, bool esmtp, bool tls, bool auth, string? rcpt, DateTimeOffset now)
    {
        var w = new ArrayBufferWriter<byte>(1); // a tiny first buffer: every piece asks for its own room
        ReceivedHeader.Write(w, helo, IPAddress.Parse(ip), "gw.test", esmtp, tls, auth, "m-17", rcpt, now);
        return Encoding.UTF8.GetString(w.WrittenSpan);
    }

    [Fact]
    public void Ipv4MappedEsmtpsaWithRecipient()
    {
        var s = Write("client.test", "::ffff:10.1.2.3", true, true, true, "b@x.example", new DateTimeOffset(2026, 11, 25, 17, 18, 0, TimeSpan.FromHours(1)));
        Assert.Equal("Received: from client.test ([10.1.2.3])\r\n\tby gw.test (Bastion) with ESMTPSA id m-17\r\n\tfor <b@x.example>; Wed, 25 Nov 2026 17:18:00 +0100\r\n", s);
    }

    [Fact]
    public void Ipv6SmtpWithoutRecipientNegativeOffset()
    {
        var s = Write("h", "2001:db8::1", false, false, false, null, new DateTimeOffset(2027, 1, 3, 4, 5, 6, new TimeSpan(-5, -30, 0)));
        Assert.Equal("Received: from h ([IPv6:2001:db8::1])\r\n\tby gw.test (Bastion) with SMTP id m-17; Sun, 03 Jan 2027 04:05:06 -0530\r\n", s);
        Assert.Equal("Sun, 03 Jan 2027 04:05:06 -0530", ReceivedHeader.Rfc5322Date(new DateTimeOffset(2027, 1, 3, 4, 5, 6, new TimeSpan(-5, -30, 0))));
    }

    [Fact]
    public void Utf8HeloAndTlsOnly()
    {
        var s = Write("bücher.test", "192.0.2.7", true, true, false, null, new DateTimeOffset(2026, 12, 4, 23, 59, 59, TimeSpan.Zero));
        Assert.Equal("Received: from bücher.test ([192.0.2.7])\r\n\tby gw.test (Bastion) with ESMTPS id m-17; Fri, 04 Dec 2026 23:59:59 +0000\r\n", s);
    }
}
