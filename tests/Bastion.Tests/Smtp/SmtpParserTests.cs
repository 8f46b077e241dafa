using System.Text;
using Bastion.Protocols.Smtp;

namespace Bastion.Tests.Smtp;

/// <summary>The sans-I/O command, address and reply parsers: valid forms, refusals with their codes, every prefix, mutations.</summary>
public class SmtpParserTests
{
    static readonly CommandOptions All = new(Size: true, EightBitMime: true, SmtpUtf8: true, Chunking: true, AllowHacks: false);
    static readonly CommandOptions Plain = new(false, false, false, false, false);

    static (CommandError Error, SmtpCommand Cmd) P(string line, CommandOptions? opt = null)
    {
        var cmd = new SmtpCommand();
        var e = SmtpCommandParser.Parse(Encoding.UTF8.GetBytes(line), opt ?? All, cmd);
        return (e, cmd);
    }

    [Theory]
    [InlineData("EHLO client.example", SmtpVerb.Ehlo, "client.example")]
    [InlineData("ehlo Client.Example", SmtpVerb.Ehlo, "client.example")]
    [InlineData("HELO [127.0.0.1]", SmtpVerb.Helo, "[127.0.0.1]")]
    [InlineData("EHLO [IPv6:::1]", SmtpVerb.Ehlo, "[ipv6:::1]")]
    [InlineData("NOOP", SmtpVerb.Noop, null)]
    [InlineData("NOOP hello there", SmtpVerb.Noop, "hello there")]
    [InlineData("HELP", SmtpVerb.Help, null)]
    [InlineData("VRFY bob", SmtpVerb.Vrfy, "bob")]
    [InlineData("AUTH PLAIN AGJvYgBwdw==", SmtpVerb.Auth, "PLAIN AGJvYgBwdw==")]
    public void Session_commands(string line, SmtpVerb verb, string? arg)
    {
        var (e, c) = P(line);
        Assert.False(e.IsError, e.Reason);
        Assert.Equal(verb, c.Verb);
        Assert.Equal(arg, c.Argument);
    }

    [Theory]
    [InlineData("DATA", SmtpVerb.Data)]
    [InlineData("rset", SmtpVerb.Rset)]
    [InlineData("QUIT", SmtpVerb.Quit)]
    [InlineData("STARTTLS", SmtpVerb.StartTls)]
    public void No_argument_commands(string line, SmtpVerb verb)
    {
        Assert.Equal(verb, P(line).Cmd.Verb);
        Assert.Equal(501, P(line + " x").Error.Code);
    }

    [Theory]
    [InlineData("MAIL FROM:<a@b.example>", "a@b.example")]
    [InlineData("mail from:<A.B@B.Example>", "A.B@b.example")]
    [InlineData("MAIL FROM: <a@b.example>", "a@b.example")]
    [InlineData("MAIL FROM:<>", "")]
    [InlineData("MAIL FROM:<\"john doe\"@b.example>", "\"john doe\"@b.example")]
    [InlineData("MAIL FROM:<\"a\\\"b\"@b.example>", "\"a\\\"b\"@b.example")]
    [InlineData("MAIL FROM:<a@[10.0.0.1]>", "a@[10.0.0.1]")]
    [InlineData("MAIL FROM:<a@bücher.example> SMTPUTF8", "a@xn--bcher-kva.example")]
    [InlineData("MAIL FROM:<jörg@b.example> SMTPUTF8", "jörg@b.example")]
    public void Mail_from_addresses(string line, string address)
    {
        var (e, c) = P(line);
        Assert.False(e.IsError, e.Reason);
        Assert.Equal(SmtpVerb.Mail, c.Verb);
        Assert.Equal(address, c.Path!.Address);
        Assert.Equal($"<{address}>", c.Path.Wire);
    }

    [Fact]
    public void Mail_parameters()
    {
        var (e, c) = P("MAIL FROM:<a@b.example> SIZE=12345 BODY=8BITMIME");
        Assert.False(e.IsError, e.Reason);
        Assert.Equal((12345L, MailBody.EightBitMime), (c.DeclaredSize, c.Body));
        Assert.True(P("MAIL FROM:<a@b.example> SMTPUTF8").Cmd.SmtpUtf8);
        // Parameters of extensions that were not offered are refused like unknown ones.
        Assert.Equal(555, P("MAIL FROM:<a@b.example> SIZE=1", Plain).Error.Code);
        Assert.Equal(555, P("MAIL FROM:<a@b.example> BODY=8BITMIME", Plain).Error.Code);
        Assert.Equal(555, P("MAIL FROM:<a@b.example> RET=FULL").Error.Code);
        Assert.Equal(555, P("MAIL FROM:<a@b.example> BODY=BINARYMIME").Error.Code);
        Assert.Equal(501, P("MAIL FROM:<a@b.example> SIZE=x").Error.Code);
        Assert.Equal(501, P("MAIL FROM:<a@b.example> SIZE=").Error.Code);
        Assert.Equal(501, P("MAIL FROM:<a@b.example>  SIZE=1").Error.Code);
        Assert.Equal(501, P("MAIL FROM:<a@b.example>SIZE=1").Error.Code);
        Assert.Equal(555, P("MAIL FROM:<a@b.example> SMTPUTF8=yes").Error.Code);
        // Non-ASCII needs SMTPUTF8 offered and asked for.
        Assert.Equal(553, P("MAIL FROM:<jörg@b.example>").Error.Code);
        Assert.Equal(501, P("MAIL FROM:<a@bücher.example>").Error.Code);
    }

    [Theory]
    [InlineData("MAIL FROM:a@b.example", 501)]
    [InlineData("MAIL FROM:<a@b.example", 501)]
    [InlineData("MAIL FROM:<a b@b.example>", 501)]
    [InlineData("MAIL FROM:<a@b..example>", 501)]
    [InlineData("MAIL FROM:<a@-b.example>", 501)]
    [InlineData("MAIL FROM:<.a@b.example>", 501)]
    [InlineData("MAIL FROM:<a..b@b.example>", 501)]
    [InlineData("MAIL FROM:<a>", 501)]
    [InlineData("MAIL FROM:<a@[300.0.0.1]>", 501)]
    [InlineData("MAIL FROM:<a@b.example>junk", 501)]
    [InlineData("MAIL TO:<a@b.example>", 501)]
    [InlineData("MAIL", 501)]
    [InlineData("MAIL FROM:<a%c@b.example>", 553)]
    [InlineData("MAIL FROM:<c!a@b.example>", 553)]
    [InlineData("MAIL FROM:<\"a%c\"@b.example>", 553)]
    [InlineData("MAIL FROM:<@relay.example:a@b.example>", 553)]
    [InlineData("MAIL FROM:<@relay.example,@r2.example:a@b.example>", 553)]
    [InlineData("MAIL FROM:<@:a@b.example>", 501)]
    [InlineData("RCPT TO:<>", 501)]
    [InlineData("RCPT TO:<a@b.example> NOTIFY=NEVER", 555)]
    [InlineData("RCPT", 501)]
    [InlineData("FOO bar", 500)]
    [InlineData("", 500)]
    [InlineData("EHLO", 501)]
    [InlineData("EHLO ", 501)]
    [InlineData("EHLO a_b.example", 501)]
    [InlineData("EHLO a.example extra", 501)]
    [InlineData("VRFY", 501)]
    [InlineData("BDAT", 501)]
    [InlineData("BDAT x", 501)]
    [InlineData("BDAT 10 NOW", 501)]
    public void Refusals_carry_the_right_code(string line, int code) => Assert.Equal(code, P(line).Error.Code);

    [Fact]
    public void Hacks_and_routes_when_allowed()
    {
        var opt = All with { AllowHacks = true };
        var (e, c) = P("MAIL FROM:<@Relay.example:a%c@b.example>", opt);
        Assert.False(e.IsError, e.Reason);
        Assert.Equal("<@relay.example:a%c@b.example>", c.Path!.Wire);
    }

    [Fact]
    public void Rcpt_postmaster_and_bdat()
    {
        Assert.Equal("Postmaster", P("RCPT TO:<Postmaster>").Cmd.Path!.Address);
        Assert.Equal("bob@x.example", P("RCPT TO:<bob@X.EXAMPLE>").Cmd.Path!.Address);
        var (e, c) = P("BDAT 1000 LAST");
        Assert.False(e.IsError);
        Assert.Equal((1000L, true), (c.ChunkSize, c.Last));
        Assert.Equal(500, P("BDAT 10", Plain).Error.Code);
    }

    [Fact]
    public void Mail_auth_parameter_only_when_auth_is_offered()
    {
        Assert.False(P("MAIL FROM:<a@b.example> AUTH=<>", All with { Auth = true }).Error.IsError);
        Assert.False(P("MAIL FROM:<a@b.example> AUTH=alice+40b.example", All with { Auth = true }).Error.IsError);
        Assert.Equal(555, P("MAIL FROM:<a@b.example> AUTH=<>").Error.Code);
        Assert.Equal(501, P("MAIL FROM:<a@b.example> AUTH=", All with { Auth = true }).Error.Code);
    }

    [Fact]
    public void Address_length_limits()
    {
        var local = new string('a', 65);
        Assert.Equal(501, P($"MAIL FROM:<{local}@b.example>").Error.Code);
        Assert.False(P($"MAIL FROM:<{local[..64]}@b.example>").Error.IsError);
        var label = new string('d', 64);
        Assert.Equal(501, P($"MAIL FROM:<a@{label}.example>").Error.Code);
    }

    static readonly string[] ValidLines =
    [
        "EHLO client.example", "MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME", "RCPT TO:<\"x y\"@c.example>",
        "MAIL FROM:<a@bücher.example> SMTPUTF8", "BDAT 100 LAST", "NOOP x", "RCPT TO:<a@[IPv6:2001:db8::1]>",
    ];

    [Fact]
    public void Every_prefix_and_random_mutations_parse_or_refuse_without_throwing()
    {
        var rng = new Random(5321);
        var cmd = new SmtpCommand();
        foreach (var line in ValidLines)
        {
            var bytes = Encoding.UTF8.GetBytes(line);
            Assert.False(SmtpCommandParser.Parse(bytes, All, cmd).IsError, line);
            for (int i = 0; i <= bytes.Length; i++)
            {
                var e = SmtpCommandParser.Parse(bytes.AsSpan(0, i), All, cmd);
                if (e.IsError) Assert.InRange(e.Code, 500, 555);
            }
            for (int k = 0; k < 3000; k++)
            {
                var m = (byte[])bytes.Clone();
                int edits = 1 + rng.Next(3);
                for (int j = 0; j < edits; j++) m[rng.Next(m.Length)] = (byte)rng.Next(256);
                var e = SmtpCommandParser.Parse(m, All, cmd);
                if (!e.IsError && cmd.Path is { } p)
                {
                    // Whatever is accepted is re-rendered in a form that parses again to the same address.
                    var again = new SmtpCommand();
                    var verb = cmd.Verb == SmtpVerb.Mail ? "MAIL FROM:" : "RCPT TO:";
                    var e2 = SmtpCommandParser.Parse(Encoding.UTF8.GetBytes(verb + p.Wire + (cmd.SmtpUtf8 ? " SMTPUTF8" : "")), All, again);
                    Assert.False(e2.IsError, $"{p.Wire}: {e2.Reason}");
                    Assert.Equal(p.Address, again.Path!.Address);
                    Assert.DoesNotContain('\r', p.Wire);
                    Assert.DoesNotContain('\n', p.Wire);
                }
                else if (e.IsError) Assert.InRange(e.Code, 500, 555);
            }
        }
    }

    static ReplyStatus Feed(ReplyAccumulator acc, string line, out SmtpReply? r) =>
        acc.Add(Encoding.ASCII.GetBytes(line), out r, out _);

    [Fact]
    public void Replies_single_and_multi_line()
    {
        var acc = new ReplyAccumulator();
        Assert.Equal(ReplyStatus.Complete, Feed(acc, "250 OK", out var r));
        Assert.Equal((250, "OK"), (r!.Code, r.Text));
        Assert.Equal(ReplyStatus.Complete, Feed(acc, "354", out r));
        Assert.Equal(354, r!.Code);
        Assert.Equal(ReplyStatus.NeedMore, Feed(acc, "250-mx.example", out _));
        Assert.Equal(ReplyStatus.NeedMore, Feed(acc, "250-PIPELINING", out _));
        Assert.Equal(ReplyStatus.NeedMore, Feed(acc, "250-SIZE 1000", out _));
        Assert.Equal(ReplyStatus.Complete, Feed(acc, "250 8BITMIME", out r));
        Assert.Equal(4, r!.Lines.Count);
        var caps = ServerCapabilities.FromEhlo(r);
        Assert.True(caps.Pipelining && caps.EightBitMime && !caps.StartTls);
        Assert.Equal(1000, caps.Size);
        Assert.Equal("250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n", r.Wire());
    }

    [Theory]
    [InlineData(250, new[] { "OK" })]
    [InlineData(354, new string[0])]
    [InlineData(250, new[] { "mx.example greets c", "PIPELINING", "SIZE 1000" })]
    [InlineData(550, new[] { "5.7.1 r\u00e9cipient refus\u00e9", "" })]
    public void A_reply_written_into_a_pipe_is_its_wire_form(int code, string[] lines)
    {
        var reply = new SmtpReply(code, [.. lines]);
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(1);
        int n = reply.WriteTo(buffer);
        Assert.Equal(reply.Wire(), Encoding.UTF8.GetString(buffer.WrittenSpan));
        Assert.Equal(buffer.WrittenCount, n);
    }

    [Fact]
    public void Server_capabilities_read_keywords_and_parameters_whatever_the_spacing_and_case()
    {
        var caps = ServerCapabilities.FromEhlo(new SmtpReply(250,
            ["mx greets gw", "pipelining", "SIZE  2048 extra", "AUTH  plain   LOGIN", "StartTLS", "CHUNKING", "ENHANCEDSTATUSCODES", "X-UNKNOWN a b"]));
        Assert.True(caps.Pipelining && caps.StartTls && caps.Chunking && caps.EnhancedStatusCodes && !caps.EightBitMime && !caps.SmtpUtf8);
        Assert.Equal(2048, caps.Size);
        Assert.Equal(["PLAIN", "LOGIN"], caps.AuthMechanisms);
        // SIZE without a number (no limit announced) or with garbage: known, no limit (0).
        Assert.Equal(0, ServerCapabilities.FromEhlo(new SmtpReply(250, ["mx", "SIZE"])).Size);
        Assert.Equal(0, ServerCapabilities.FromEhlo(new SmtpReply(250, ["mx", "SIZE -5"])).Size);
        // The first line is the server's name, never a keyword.
        Assert.False(ServerCapabilities.FromEhlo(new SmtpReply(250, ["PIPELINING"])).Pipelining);
        Assert.Empty(ServerCapabilities.FromEhlo(new SmtpReply(250, ["mx", "AUTH"])).AuthMechanisms);
    }

    [Theory]
    [InlineData("25 OK")]
    [InlineData("abc OK")]
    [InlineData("250OK")]
    [InlineData("199 too low")]
    [InlineData("600 too high")]
    [InlineData("260 bad second digit")]
    [InlineData("250 a\u0001b")]
    [InlineData("")]
    public void Garbage_replies_are_malformed(string line) => Assert.Equal(ReplyStatus.Malformed, Feed(new ReplyAccumulator(), line, out _));

    [Fact]
    public void A_multi_line_reply_keeps_one_code_and_a_bounded_length()
    {
        var acc = new ReplyAccumulator();
        Assert.Equal(ReplyStatus.NeedMore, Feed(acc, "250-a", out _));
        Assert.Equal(ReplyStatus.Malformed, Feed(acc, "550 b", out _));
        // After a malformed reply the accumulator starts over.
        Assert.Equal(ReplyStatus.Complete, Feed(acc, "220 ok", out _));
        for (int i = 0; i < ReplyAccumulator.MaxLines; i++) Assert.Equal(ReplyStatus.NeedMore, Feed(acc, "250-x", out _));
        Assert.Equal(ReplyStatus.Malformed, Feed(acc, "250-x", out _));
    }

    [Fact]
    public void Ehlo_reply_is_trimmed_to_the_allow_list_and_what_the_server_can_carry()
    {
        var server = new ServerCapabilities(false, 10_000, true, false, true, true, false, ["PLAIN"]);
        var offer = Extensions.Decide(["PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "STARTTLS", "ENHANCEDSTATUSCODES"], server, tlsConfigured: true, tlsActive: false);
        var lines = Extensions.EhloLines("gw.example", "client.example", offer, 5_000);
        Assert.Equal(["gw.example greets client.example", "PIPELINING", "SIZE 5000", "8BITMIME", "STARTTLS"], lines);
        // After STARTTLS, or without a certificate, STARTTLS is not offered; nothing beyond the allow-list ever is.
        offer = Extensions.Decide(["SIZE"], server, tlsConfigured: true, tlsActive: true);
        Assert.Equal(["gw.example greets c", "SIZE 5000"], Extensions.EhloLines("gw.example", "c", offer, 5_000));
        // AUTH is the gateway's own (the server's AUTH PLAIN above is never shown): with authenticate, over TLS
        // unless allowed in the clear. CHUNKING is the gateway's own too, whatever the server offers.
        string[] both = ["AUTH", "CHUNKING"];
        Assert.Equal(["g greets c", "CHUNKING"], Extensions.EhloLines("g", "c", Extensions.Decide(both, server, true, false, authenticate: true), 1));
        Assert.Equal(["g greets c", "AUTH PLAIN LOGIN", "CHUNKING"], Extensions.EhloLines("g", "c", Extensions.Decide(both, server, true, true, authenticate: true), 1));
        Assert.Equal(["g greets c", "AUTH PLAIN LOGIN"], Extensions.EhloLines("g", "c", Extensions.Decide(["AUTH"], server, false, false, true, authWithoutTls: true), 1));
        Assert.Equal(["g greets c"], Extensions.EhloLines("g", "c", Extensions.Decide(["AUTH"], server, true, true, authenticate: false), 1));
    }
}
