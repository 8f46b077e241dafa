using System.Net;
using System.Text;
using Bastion.Protocols.Ftp;

namespace Bastion.Tests.Ftp;

public class FtpCommandParserTests
{
    static (FtpParse Status, FtpCommandLine Cmd) P(string line) => P(Encoding.Latin1.GetBytes(line));

    static (FtpParse Status, FtpCommandLine Cmd) P(byte[] line) => (FtpCommandParser.Parse(line, out var c), c);

    static string PathOf(string line)
    {
        var bytes = Encoding.Latin1.GetBytes(line);
        var (s, c) = P(bytes);
        Assert.Equal(FtpParse.Ok, s);
        return Encoding.Latin1.GetString(c.Path(bytes));
    }

    [Theory]
    [InlineData("USER anonymous", FtpVerb.USER)]
    [InlineData("user anonymous", FtpVerb.USER)]
    [InlineData("PASS", FtpVerb.PASS)]
    [InlineData("PASS secret with spaces", FtpVerb.PASS)]
    [InlineData("RETR /pub/a file.txt", FtpVerb.RETR)]
    [InlineData("Stor x", FtpVerb.STOR)]
    [InlineData("CDUP", FtpVerb.CDUP)]
    [InlineData("NOOP ", FtpVerb.NOOP)]
    [InlineData("FEAT", FtpVerb.FEAT)]
    [InlineData("OPTS UTF8 ON", FtpVerb.OPTS)]
    [InlineData("SIZE f", FtpVerb.SIZE)]
    [InlineData("MDTM f", FtpVerb.MDTM)]
    [InlineData("MLSD", FtpVerb.MLSD)]
    [InlineData("MLST /x", FtpVerb.MLST)]
    [InlineData("REST 100", FtpVerb.REST)]
    [InlineData("ABOR", FtpVerb.ABOR)]
    [InlineData("STAT", FtpVerb.STAT)]
    [InlineData("AUTH TLS", FtpVerb.AUTH)]
    [InlineData("AUTH ssl", FtpVerb.AUTH)]
    [InlineData("PBSZ 0", FtpVerb.PBSZ)]
    [InlineData("PROT P", FtpVerb.PROT)]
    [InlineData("CCC", FtpVerb.CCC)]
    [InlineData("TYPE I", FtpVerb.TYPE)]
    [InlineData("TYPE A N", FtpVerb.TYPE)]
    [InlineData("TYPE L 8", FtpVerb.TYPE)]
    [InlineData("MODE S", FtpVerb.MODE)]
    [InlineData("STRU F", FtpVerb.STRU)]
    [InlineData("EPSV", FtpVerb.EPSV)]
    [InlineData("EPSV ALL", FtpVerb.EPSV)]
    [InlineData("EPSV 2", FtpVerb.EPSV)]
    [InlineData("PASV", FtpVerb.PASV)]
    [InlineData("PORT 127,0,0,1,4,1", FtpVerb.PORT)]
    [InlineData("EPRT |2|::1|2000|", FtpVerb.EPRT)]
    [InlineData("LIST -la", FtpVerb.LIST)]
    [InlineData("MFMT 20240102030405 f", FtpVerb.MFMT)]
    [InlineData("XPWD", FtpVerb.XPWD)]
    public void Known_commands_parse(string line, FtpVerb verb)
    {
        var (s, c) = P(line);
        Assert.Equal(FtpParse.Ok, s);
        Assert.Equal(verb, c.Spec!.Verb);
    }

    [Theory]
    [InlineData("", 500)]
    [InlineData("HELLO", 500)]
    [InlineData("XY", 500)]
    [InlineData("RETRX f", 500)]
    [InlineData(" RETR f", 500)]
    [InlineData("RE1R f", 500)]
    [InlineData("RETR", 501)]
    [InlineData("CDUP x", 501)]
    [InlineData("PWD /", 501)]
    [InlineData("REST -1", 501)]
    [InlineData("REST 1e3", 501)]
    [InlineData("TYPE X", 501)]
    [InlineData("TYPE L", 501)]
    [InlineData("TYPE I N", 501)]
    [InlineData("MODE Z", 504)]
    [InlineData("MODE Q", 501)]
    [InlineData("STRU R", 504)]
    [InlineData("PORT 1,2,3,4,5", 501)]
    [InlineData("PORT 1,2,3,4,5,256", 501)]
    [InlineData("PORT 1,2,3,4,5,6,7", 501)]
    [InlineData("PORT 1, 2,3,4,5,6", 501)]
    [InlineData("EPRT |3|x|1|", 522)]
    [InlineData("EPRT |1|::1|2000|", 501)]
    [InlineData("EPRT |1|127.1|2000|", 501)]
    [InlineData("EPRT |2|fe80::1%eth0|2000|", 501)]
    [InlineData("EPRT |1|127.0.0.1|0|", 501)]
    [InlineData("EPRT |1|127.0.0.1|70000|", 501)]
    [InlineData("EPRT |1|127.0.0.1|2000", 501)]
    [InlineData("EPSV 3", 522)]
    [InlineData("EPSV x", 501)]
    [InlineData("AUTH KERBEROS", 504)]
    [InlineData("PROT X", 504)]
    [InlineData("PBSZ", 501)]
    [InlineData("USER", 501)]
    [InlineData("MFMT 2024 f", 501)]
    [InlineData("LIST -l$ x", 501)]
    [InlineData("RETR a\0b", 501)]
    [InlineData("RETR a\rb", 501)]
    public void Bad_lines_get_the_right_code(string line, int code)
    {
        var (s, c) = P(line);
        Assert.NotEqual(FtpParse.Ok, s);
        Assert.Equal(code, c.ErrorCode);
        Assert.False(string.IsNullOrEmpty(c.Error));
    }

    [Fact]
    public void Paths_and_list_options_are_located()
    {
        Assert.Equal("/pub/a file.txt", PathOf("RETR /pub/a file.txt"));
        Assert.Equal("x ", PathOf("STOR x "));
        Assert.Equal("", PathOf("LIST -la"));
        Assert.Equal("/pub", PathOf("LIST -a -l /pub"));
        Assert.Equal("sub dir", PathOf("NLST sub dir"));
        Assert.Equal("f", PathOf("MFMT 20240102030405.123 f"));
        Assert.Equal("", PathOf("MLSD"));
        var (_, c) = P("REST 12345678901");
        Assert.Equal(12345678901L, c.Number);
        (_, c) = P("EPSV ALL");
        Assert.Equal(-1, c.EpsvProto);
        (_, c) = P("prot p");
        Assert.Equal((byte)'P', c.Letter);
    }

    [Fact]
    public void X_forms_are_their_RFC_959_verbs_to_the_policy()
    {
        Assert.Equal("MKD", P("XMKD a").Cmd.Spec!.Name);
        Assert.Equal(FtpVerb.XMKD, P("XMKD a").Cmd.Spec!.Verb);
        Assert.Equal("CWD", P("xcwd a").Cmd.Spec!.Name);
        Assert.Equal("CDUP", P("XCUP").Cmd.Spec!.Name);
        Assert.Equal("PWD", P("XPWD").Cmd.Spec!.Name);
        Assert.Equal("RMD", P("XRMD a").Cmd.Spec!.Name);
    }

    [Fact]
    public void Addresses_in_PORT_and_EPRT()
    {
        var (_, c) = P("PORT 10,1,2,3,195,80");
        Assert.Equal(new IPEndPoint(IPAddress.Parse("10.1.2.3"), 50000), c.Address);
        (_, c) = P("EPRT |1|10.1.2.3|50000|");
        Assert.Equal(new IPEndPoint(IPAddress.Parse("10.1.2.3"), 50000), c.Address);
        (_, c) = P("EPRT !2!::1!2000!");
        Assert.Equal(new IPEndPoint(IPAddress.IPv6Loopback, 2000), c.Address);
    }

    [Fact]
    public void Telnet_interrupt_before_ABOR_is_skipped()
    {
        byte[] line = [255, 244, 255, 242, .. "ABOR"u8];
        var (s, c) = P(line);
        Assert.Equal(FtpParse.Ok, s);
        Assert.Equal(FtpVerb.ABOR, c.Spec!.Verb);
        Assert.Equal(4, c.VerbStart);
        byte[] dmOnly = [242, .. "ABOR"u8];
        Assert.Equal(FtpParse.Ok, P(dmOnly).Status);
    }

    static readonly string[] Valid =
    [
        "USER anonymous", "PASS a@b", "CWD /pub/sub", "RETR file.bin", "PORT 127,0,0,1,200,10",
        "EPRT |2|::1|4000|", "LIST -la /x", "MFMT 20240102030405 f", "TYPE L 8", "EPSV ALL", "REST 99", "PROT P",
    ];

    [Fact]
    public void Every_prefix_of_every_valid_line_is_a_value_never_an_exception()
    {
        foreach (var v in Valid)
        {
            var bytes = Encoding.ASCII.GetBytes(v);
            for (int n = 0; n <= bytes.Length; n++)
            {
                var status = FtpCommandParser.Parse(bytes.AsSpan(0, n), out var c);
                if (status == FtpParse.Ok) Assert.NotNull(c.Spec);
                else Assert.True(c.ErrorCode is 500 or 501 or 504 or 522, $"{v}[..{n}] gave {c.ErrorCode}");
                if (c.HasPath) Assert.True(c.PathStart + c.PathLength <= n);
            }
        }
    }

    [Fact]
    public void Random_mutations_never_throw_and_offsets_stay_inside_the_line()
    {
        var rng = new Random(10);
        for (int round = 0; round < 20_000; round++)
        {
            var bytes = Encoding.ASCII.GetBytes(Valid[rng.Next(Valid.Length)]);
            int flips = rng.Next(1, 4);
            for (int f = 0; f < flips; f++)
            {
                switch (rng.Next(3))
                {
                    case 0: bytes[rng.Next(bytes.Length)] = (byte)rng.Next(256); break;
                    case 1: bytes = [.. bytes.AsSpan(0, rng.Next(bytes.Length))]; break;
                    default:
                        int at = rng.Next(bytes.Length + 1);
                        bytes = [.. bytes.AsSpan(0, at), (byte)rng.Next(256), .. bytes.AsSpan(at)];
                        break;
                }
                if (bytes.Length == 0) bytes = [(byte)'X'];
            }
            var status = FtpCommandParser.Parse(bytes, out var c);
            if (status == FtpParse.Ok)
            {
                Assert.NotNull(c.Spec);
                Assert.True(c.ArgLength <= 0 || c.ArgStart + c.ArgLength == bytes.Length);
                if (c.HasPath)
                {
                    Assert.True(c.PathStart >= c.ArgStart && c.PathStart + c.PathLength <= bytes.Length);
                    Assert.DoesNotContain((byte)0, c.Path(bytes).ToArray());
                }
            }
            else Assert.NotNull(c.Error);
        }
    }
}
