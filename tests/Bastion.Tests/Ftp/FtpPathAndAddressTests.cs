using System.Net;
using System.Text;
using Bastion.Protocols.Ftp;

namespace Bastion.Tests.Ftp;

public class FtpPathAndAddressTests
{
    static (string Path, bool Canonical) R(string cwd, string arg)
    {
        Assert.True(FtpPath.TryResolve(cwd, Encoding.UTF8.GetBytes(arg), out var p, out var c, out var e), e);
        return (p, c);
    }

    [Theory]
    [InlineData("/", "x", "/x", true)]
    [InlineData("/ro", "x", "/ro/x", true)]
    [InlineData("/ro", "sub/x", "/ro/sub/x", true)]
    [InlineData("/ro", "/ro/../ro", "/ro", false)]
    [InlineData("/ro", "../rw/x", "/rw/x", false)]
    [InlineData("/", "../../../etc/passwd", "/etc/passwd", false)]
    [InlineData("/a", "./b", "/a/b", false)]
    [InlineData("/a", "b/", "/a/b", false)]
    [InlineData("/a", "b//c", "/a/b/c", false)]
    [InlineData("/a", "//b", "/b", false)]
    [InlineData("/a", "/b/", "/b", false)]
    [InlineData("/a", "/b", "/b", true)]
    [InlineData("/a", ".", "/a", false)]
    [InlineData("/a", "..", "/", false)]
    [InlineData("/a", "a file with spaces ", "/a/a file with spaces ", true)]
    [InlineData("/", "ünïcode", "/ünïcode", true)]
    [InlineData("/", "...", "/...", true)]
    public void Resolves_and_normalises(string cwd, string arg, string expected, bool canonical)
    {
        var (p, c) = R(cwd, arg);
        Assert.Equal(expected, p);
        Assert.Equal(canonical, c);
    }

    [Fact]
    public void Ambiguous_or_invalid_paths_are_refused()
    {
        foreach (var bad in new byte[][] { "a\\..\\b"u8.ToArray(), "~root"u8.ToArray(), [0xC3, 0x28], [(byte)'a', 0x01], [(byte)'a', 0x7F] })
        {
            Assert.False(FtpPath.TryResolve("/", bad, out _, out _, out var e));
            Assert.NotNull(e);
        }
        Assert.False(FtpPath.TryResolve("/", new byte[FtpPath.MaxLength + 1], out _, out _, out _));
    }

    [Fact]
    public void Parent_of_paths()
    {
        Assert.Equal("/", FtpPath.Parent("/"));
        Assert.Equal("/", FtpPath.Parent("/a"));
        Assert.Equal("/a", FtpPath.Parent("/a/b"));
    }

    [Theory]
    [InlineData("\"/\" is the current directory", "/")]
    [InlineData("\"/pub/sub\"", "/pub/sub")]
    [InlineData("\"/a \"\"quoted\"\" dir\" is current", "/a \"quoted\" dir")]
    [InlineData("\"/x/../y/\" created", "/y")]
    public void Parses_257_replies(string text, string dir)
    {
        Assert.True(FtpPath.TryParse257(Encoding.UTF8.GetBytes(text), out var d));
        Assert.Equal(dir, d);
    }

    [Theory]
    [InlineData("/pub is current")]
    [InlineData("\"relative\"")]
    [InlineData("\"/unterminated")]
    [InlineData("\"\"")]
    [InlineData("")]
    public void Refuses_bad_257_replies(string text) => Assert.False(FtpPath.TryParse257(Encoding.UTF8.GetBytes(text), out _));

    [Fact]
    public void Every_prefix_and_mutation_of_a_257_reply_is_a_value()
    {
        var good = Encoding.UTF8.GetBytes("\"/a \"\"q\"\" b\" is current");
        for (int n = 0; n <= good.Length; n++) FtpPath.TryParse257(good.AsSpan(0, n), out _);
        var rng = new Random(3);
        for (int i = 0; i < 5000; i++)
        {
            var m = (byte[])good.Clone();
            m[rng.Next(m.Length)] = (byte)rng.Next(256);
            if (FtpPath.TryParse257(m, out var d)) Assert.StartsWith("/", d);
        }
    }

    [Fact]
    public void Pasv_and_epsv_replies_parse()
    {
        Assert.True(FtpAddress.TryParsePasvReply("Entering Passive Mode (127,0,0,1,195,80)."u8, out var ep));
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 50000), ep);
        // RFC 1123: the numbers may come without parentheses.
        Assert.True(FtpAddress.TryParsePasvReply("=10,0,0,2,4,1"u8, out ep));
        Assert.Equal(new IPEndPoint(IPAddress.Parse("10.0.0.2"), 1025), ep);
        Assert.False(FtpAddress.TryParsePasvReply("Entering Passive Mode (127,0,0,1,195)"u8, out _));
        Assert.False(FtpAddress.TryParsePasvReply("(300,0,0,1,1,1)"u8, out _));

        Assert.True(FtpAddress.TryParseEpsvReply("Entering Extended Passive Mode (|||6446|)"u8, out var port));
        Assert.Equal(6446, port);
        Assert.True(FtpAddress.TryParseEpsvReply("ok (!!!1!)"u8, out port));
        Assert.Equal(1, port);
        Assert.False(FtpAddress.TryParseEpsvReply("(|||0|)"u8, out _));
        Assert.False(FtpAddress.TryParseEpsvReply("(|||70000|)"u8, out _));
        Assert.False(FtpAddress.TryParseEpsvReply("(||1|6446|)"u8, out _));
        Assert.False(FtpAddress.TryParseEpsvReply("no parens"u8, out _));
    }

    [Fact]
    public void Every_prefix_and_mutation_of_pasv_and_epsv_replies_is_a_value()
    {
        var rng = new Random(5);
        foreach (var good in new[] { "Entering Passive Mode (127,0,0,1,195,80)."u8.ToArray(), "Extended (|||6446|)"u8.ToArray() })
        {
            for (int n = 0; n <= good.Length; n++)
            {
                FtpAddress.TryParsePasvReply(good.AsSpan(0, n), out _);
                FtpAddress.TryParseEpsvReply(good.AsSpan(0, n), out _);
            }
            for (int i = 0; i < 5000; i++)
            {
                var m = (byte[])good.Clone();
                m[rng.Next(m.Length)] = (byte)rng.Next(256);
                if (FtpAddress.TryParsePasvReply(m, out var ep)) Assert.InRange(ep!.Port, 0, 65535);
                if (FtpAddress.TryParseEpsvReply(m, out var p)) Assert.InRange(p, 1, 65535);
            }
        }
    }

    [Fact]
    public void Formats_round_trip()
    {
        var v4 = new IPEndPoint(IPAddress.Parse("192.0.2.7"), 50001);
        Assert.Equal("227 Entering Passive Mode (192,0,2,7,195,81).", FtpAddress.PasvReply(v4.Address, v4.Port));
        Assert.True(FtpAddress.TryParsePasvReply(Encoding.ASCII.GetBytes(FtpAddress.PasvReply(v4.Address, v4.Port)), out var back));
        Assert.Equal(v4, back);
        Assert.Equal("229 Entering Extended Passive Mode (|||50001|)", FtpAddress.EpsvReply(50001));
        Assert.Equal("PORT 192,0,2,7,195,81", FtpAddress.ActiveCommand(v4, extended: false));
        Assert.Equal("EPRT |1|192.0.2.7|50001|", FtpAddress.ActiveCommand(v4, extended: true));
        Assert.Equal("PORT 192,0,2,7,195,81", FtpAddress.ActiveCommand(new IPEndPoint(v4.Address.MapToIPv6(), 50001), extended: false));
        Assert.Equal("EPRT |2|::1|2000|", FtpAddress.ActiveCommand(new IPEndPoint(IPAddress.IPv6Loopback, 2000), extended: false));
        Assert.True(FtpAddress.SameHost(IPAddress.Loopback, IPAddress.Loopback.MapToIPv6()));
        Assert.False(FtpAddress.SameHost(IPAddress.Loopback, IPAddress.IPv6Loopback));
    }

    [Fact]
    public void Feat_is_filtered_to_what_the_gateway_relays()
    {
        var server = new FtpReply();
        foreach (var l in new[] { "211-Features:", " MDTM", " MODE Z", " REST STREAM", " SIZE", " MLST type*;size*;modify*;", " UTF8",
                     " AUTH TLS", " HOST", " XCRC \"filename\" SP EP", " EPSV", "211 End" })
            server.Feed(Encoding.ASCII.GetBytes(l));
        var text = Encoding.ASCII.GetString(FtpFeatures.Reply(server, clientTls: false));
        Assert.Equal("211-Features:\r\n MDTM\r\n REST STREAM\r\n SIZE\r\n MLST type*;size*;modify*;\r\n UTF8\r\n EPRT\r\n EPSV\r\n PASV\r\n211 End\r\n", text);
        var tls = Encoding.ASCII.GetString(FtpFeatures.Reply(null, clientTls: true));
        Assert.Equal("211-Features:\r\n EPRT\r\n EPSV\r\n PASV\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n211 End\r\n", tls);
    }
}
