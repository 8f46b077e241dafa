using System.Net;
using Bastion.Protocols.Socks5;

namespace Bastion.Tests.Socks;

public class SocksParserTests
{
    [Fact]
    public void Greeting()
    {
        Assert.Equal(SocksParse.NeedMore, SocksParser.Greeting([5], out _, out _, out _));
        Assert.Equal(SocksParse.NeedMore, SocksParser.Greeting([5, 2, 0], out _, out _, out _));
        Assert.Equal(SocksParse.Done, SocksParser.Greeting([5, 2, 0, 2, 9], out var none, out var up, out var len));
        Assert.True(none && up);
        Assert.Equal(4, len);
        Assert.Equal(SocksParse.Malformed, SocksParser.Greeting([5, 0], out _, out _, out _));
        Assert.Equal(SocksParse.Malformed, SocksParser.Greeting([4, 1, 0], out _, out _, out _));
    }

    [Fact]
    public void UserPass()
    {
        byte[] msg = [1, 5, .. "alice"u8, 3, .. "pw!"u8];
        Assert.Equal(SocksParse.Done, SocksParser.UserPass(msg, out var u, out var p, out var len));
        Assert.Equal(("alice", "pw!", msg.Length), (u, p, len));
        Assert.Equal(SocksParse.NeedMore, SocksParser.UserPass(msg[..^1], out _, out _, out _));
        Assert.Equal(SocksParse.Malformed, SocksParser.UserPass([1, 0, 0], out _, out _, out _));
        Assert.Equal(SocksParse.Malformed, SocksParser.UserPass([1, 1, 0xFF, 0], out _, out _, out _));
    }

    [Fact]
    public void Requests_by_address_type()
    {
        Assert.Equal(SocksParse.Done, SocksParser.Request([5, 1, 0, 1, 127, 0, 0, 1, 0, 80, 0xAA], out var r, out _));
        Assert.Equal((IPAddress.Loopback, 80, 10), (r.Target.Address, r.Target.Port, r.Length));

        byte[] v6 = [5, 1, 0, 4, .. IPAddress.IPv6Loopback.GetAddressBytes(), 1, 0];
        Assert.Equal(SocksParse.Done, SocksParser.Request(v6, out r, out _));
        Assert.Equal("[::1]:256", r.Target.ToString());

        byte[] dom = [5, 1, 0, 3, 11, .. "Example.COM"u8, 1, 187];
        Assert.Equal(SocksParse.Done, SocksParser.Request(dom, out r, out _));
        Assert.Equal(("example.com", 443), (r.Target.Host, r.Target.Port));
        Assert.Equal(SocksParse.NeedMore, SocksParser.Request(dom[..^1], out _, out _));

        // An IP literal sent as a name is an IP: nothing to resolve.
        byte[] lit = [5, 1, 0, 3, 9, .. "127.0.0.1"u8, 0, 80];
        Assert.Equal(SocksParse.Done, SocksParser.Request(lit, out r, out _));
        Assert.Equal(IPAddress.Loopback, r.Target.Address);
        Assert.Null(r.Target.Domain);

        Assert.Equal(SocksParse.Malformed, SocksParser.Request([5, 1, 0, 9, 0, 0], out _, out var code));
        Assert.Equal(SocksReply.AddressTypeNotSupported, code);
        Assert.Equal(SocksParse.Malformed, SocksParser.Request([5, 1, 0, 3, 0, 0, 80], out _, out code));
        Assert.Equal(SocksReply.GeneralFailure, code);
        Assert.Equal(SocksParse.Malformed, SocksParser.Request([5, 1, 0, 3, 3, (byte)'a', 0, (byte)'b', 0, 80], out _, out _));
        Assert.Equal(SocksParse.Malformed, SocksParser.Request([5, 1, 0, 3, 4, (byte)'a', (byte)'.', (byte)'.', (byte)'b', 0, 80], out _, out _));
    }

    [Fact]
    public void Socks4_and_4a()
    {
        byte[] s4 = [4, 1, 0, 80, 10, 0, 0, 1, .. "bob"u8, 0];
        Assert.Equal(SocksParse.Done, SocksParser.Socks4(s4, out var r));
        Assert.Equal(("10.0.0.1", 80, "bob", s4.Length), (r.Target.Host, r.Target.Port, r.UserId, r.Length));
        byte[] s4a = [4, 1, 1, 187, 0, 0, 0, 1, 0, .. "host.test"u8, 0];
        Assert.Equal(SocksParse.Done, SocksParser.Socks4(s4a, out r));
        Assert.Equal(("host.test", 443, s4a.Length), (r.Target.Host, r.Target.Port, r.Length));
        Assert.Equal(SocksParse.NeedMore, SocksParser.Socks4(s4a[..^1], out _));
        byte[] longId = [4, 1, 0, 80, 10, 0, 0, 1, .. Enumerable.Repeat((byte)'x', 300)];
        Assert.Equal(SocksParse.Malformed, SocksParser.Socks4(longId, out _));
    }

    [Fact]
    public void Udp_header_and_reply_writer()
    {
        byte[] d = [0, 0, 0, 1, 127, 0, 0, 1, 0, 53, .. "query"u8];
        Assert.Equal(10, SocksParser.UdpHeader(d, out var frag, out var t));
        Assert.Equal((0, "127.0.0.1", 53), (frag, t.Host, t.Port));
        Assert.Equal(-1, SocksParser.UdpHeader([0, 1, 0, 1], out _, out _));
        var buf = new byte[22];
        Assert.Equal(10, SocksParser.WriteReply(buf, 0, new IPEndPoint(IPAddress.Parse("::ffff:10.1.2.3"), 1080)));
        Assert.Equal(new byte[] { 5, 0, 0, 1, 10, 1, 2, 3, 4, 56 }, buf[..10]);
        Assert.Equal(22, SocksParser.WriteReply(buf, 0, new IPEndPoint(IPAddress.IPv6Loopback, 1)));
    }
}
