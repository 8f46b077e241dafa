using System.Buffers;
using System.Net;
using System.Text;
using Bastion.Gateway;
using Bastion.Configuration;
using Bastion.Hosting;

namespace Bastion.Tests.Tcp;

public class ProxyProtocolTests
{
    static ProxyParseStatus Parse(byte[] b, out ProxyHeader? h, out string? e) => ProxyProtocol.TryParse(b, out h, out e);

    [Fact]
    public void V1_tcp4_with_trailing_payload()
    {
        var b = Encoding.ASCII.GetBytes("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n");
        Assert.Equal(ProxyParseStatus.Parsed, Parse(b, out var h, out _));
        Assert.Equal(1, h!.Version);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("192.0.2.1"), 56324), h.Source);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("198.51.100.2"), 443), h.Destination);
        Assert.Equal("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n".Length, h.Length);
    }

    [Fact]
    public void V1_tcp6_and_unknown()
    {
        Assert.Equal(ProxyParseStatus.Parsed, Parse(Encoding.ASCII.GetBytes("PROXY TCP6 2001:db8::1 ::1 1 65535\r\n"), out var h, out _));
        Assert.Equal(IPAddress.Parse("2001:db8::1"), h!.Source!.Address);
        Assert.Equal(65535, h.Destination!.Port);
        Assert.Equal(ProxyParseStatus.Parsed, Parse(Encoding.ASCII.GetBytes("PROXY UNKNOWN ffff::1 whatever\r\n"), out h, out _));
        Assert.Null(h!.Source);
    }

    [Theory]
    [InlineData("GET / HTTP/1.1\r\n")]
    [InlineData("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n")]          // LF without CR
    [InlineData("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n")]          // missing port
    [InlineData("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n")]      // extra field
    [InlineData("PROXY TCP4 ::1 5.6.7.8 1 2\r\n")]            // family mismatch
    [InlineData("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n")]    // port range
    [InlineData("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n")]       // leading zero
    [InlineData("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n")]       // double space
    [InlineData("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n")]
    [InlineData("PROXX")]
    public void V1_malformed(string text)
    {
        Assert.Equal(ProxyParseStatus.Malformed, Parse(Encoding.ASCII.GetBytes(text), out _, out var e));
        Assert.NotNull(e);
    }

    [Fact]
    public void V1_too_long_without_newline_is_malformed_not_need_more()
    {
        var b = Encoding.ASCII.GetBytes("PROXY TCP4 " + new string('1', 200));
        Assert.Equal(ProxyParseStatus.Malformed, Parse(b, out _, out _));
    }

    [Fact]
    public void Every_prefix_of_a_valid_header_needs_more()
    {
        var v1 = Encoding.ASCII.GetBytes("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n");
        var v2 = ProxyProtocol.BuildV2(new IPEndPoint(IPAddress.Parse("2001:db8::7"), 1234), new IPEndPoint(IPAddress.IPv6Loopback, 80));
        foreach (var full in new[] { v1, v2 })
        {
            for (int i = 0; i < full.Length; i++)
                Assert.Equal(ProxyParseStatus.NeedMore, Parse(full[..i], out _, out _));
            Assert.Equal(ProxyParseStatus.Parsed, Parse(full, out var h, out _));
            Assert.Equal(full.Length, h!.Length);
        }
    }

    [Fact]
    public void V2_round_trip_ipv4_and_ipv6()
    {
        var src = new IPEndPoint(IPAddress.Parse("10.1.2.3"), 40000);
        var dst = new IPEndPoint(IPAddress.Parse("10.9.9.9"), 5432);
        var b = ProxyProtocol.BuildV2(src, dst);
        Assert.Equal(16 + 12, b.Length);
        Assert.Equal(ProxyParseStatus.Parsed, Parse(b, out var h, out _));
        Assert.Equal((2, false, src, dst), (h!.Version, h.IsLocal, h.Source, h.Destination));

        // Mixed families: the IPv4 side is mapped into IPv6.
        var src6 = new IPEndPoint(IPAddress.Parse("2001:db8::1"), 1);
        b = ProxyProtocol.BuildV2(src6, dst);
        Assert.Equal(16 + 36, b.Length);
        Assert.Equal(ProxyParseStatus.Parsed, Parse(b, out h, out _));
        Assert.Equal(src6, h!.Source);
        Assert.Equal(dst.Address.MapToIPv6(), h.Destination!.Address);

        // v1 writer of a mapped address writes plain IPv4.
        var v1 = Encoding.ASCII.GetString(ProxyProtocol.BuildV1(new IPEndPoint(IPAddress.Parse("::ffff:127.0.0.1"), 5), dst));
        Assert.Equal("PROXY TCP4 127.0.0.1 10.9.9.9 5 5432\r\n", v1);
    }

    [Fact]
    public void V2_local_keeps_the_peer_and_tlvs_are_read()
    {
        var b = ProxyProtocol.BuildV2(new IPEndPoint(IPAddress.Loopback, 1), new IPEndPoint(IPAddress.Loopback, 2), local: true);
        Assert.Equal(ProxyParseStatus.Parsed, Parse(b, out var h, out _));
        Assert.True(h!.IsLocal);
        Assert.Null(h.Source);

        // PROXY, INET, with an AUTHORITY TLV and an SSL TLV holding a verified client CN.
        var tlvs = new List<byte>();
        void Tlv(List<byte> into, byte type, byte[] v) { into.Add(type); into.Add((byte)(v.Length >> 8)); into.Add((byte)v.Length); into.AddRange(v); }
        Tlv(tlvs, 0x02, "db.example.com"u8.ToArray());
        var ssl = new List<byte> { 0x03, 0, 0, 0, 0 };
        Tlv(ssl, 0x22, "alice"u8.ToArray());
        Tlv(tlvs, 0x20, [.. ssl]);
        var head = ProxyProtocol.BuildV2(new IPEndPoint(IPAddress.Parse("10.0.0.1"), 1), new IPEndPoint(IPAddress.Parse("10.0.0.2"), 2));
        int len = 12 + tlvs.Count;
        head[14] = (byte)(len >> 8);
        head[15] = (byte)len;
        var all = head.Concat(tlvs).ToArray();
        Assert.Equal(ProxyParseStatus.Parsed, Parse(all, out h, out _));
        Assert.Equal("db.example.com", h!.Authority);
        Assert.Equal("alice", h.VerifiedClientCn);
        Assert.Equal(all.Length, h.Length);
    }

    [Fact]
    public void V2_malformed_and_bounded()
    {
        var good = ProxyProtocol.BuildV2(new IPEndPoint(IPAddress.Loopback, 1), new IPEndPoint(IPAddress.Loopback, 2));
        var badVersion = (byte[])good.Clone();
        badVersion[12] = 0x31;
        Assert.Equal(ProxyParseStatus.Malformed, Parse(badVersion, out _, out _));
        var badFamily = (byte[])good.Clone();
        badFamily[13] = 0x51;
        Assert.Equal(ProxyParseStatus.Malformed, Parse(badFamily, out _, out _));
        var shortAddr = (byte[])good.Clone();
        shortAddr[15] = 4; // claims INET but only 4 address bytes
        Assert.Equal(ProxyParseStatus.Malformed, Parse(shortAddr[..20], out _, out _));
        var huge = (byte[])good.Clone();
        huge[14] = 0xFF;
        huge[15] = 0xFF;
        Assert.Equal(ProxyParseStatus.Malformed, Parse(huge, out _, out var e));
        Assert.Contains("longer", e);
        var badSig = (byte[])good.Clone();
        badSig[5] = 0x0C;
        Assert.Equal(ProxyParseStatus.Malformed, Parse(badSig[..8], out _, out _));
    }

    [Fact]
    public void Parses_across_sequence_segments()
    {
        var b = Encoding.ASCII.GetBytes("PROXY TCP4 1.2.3.4 5.6.7.8 10 20\r\nrest");
        var first = new Segment(b[..7]);
        var last = first.Append(b[7..]);
        var seq = new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
        Assert.Equal(ProxyParseStatus.Parsed, ProxyProtocol.TryParse(seq, out var h, out _));
        Assert.Equal(10, h!.Source!.Port);
    }

    [Fact]
    public void Build_none_is_empty()
    {
        Assert.Empty(ProxyProtocol.Build(ProxyProtocolVersion.None, new IPEndPoint(IPAddress.Loopback, 1), new IPEndPoint(IPAddress.Loopback, 2)));
    }

    sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> m) => Memory = m;

        public Segment Append(ReadOnlyMemory<byte> m)
        {
            var s = new Segment(m) { RunningIndex = RunningIndex + Memory.Length };
            Next = s;
            return s;
        }
    }
}
