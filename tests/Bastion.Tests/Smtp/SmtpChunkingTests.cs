using System.Text;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Smtp;

/// <summary>
/// CHUNKING (BDAT) from a raw client through the gateway to aiosmtpd, which does not offer CHUNKING: the gateway
/// turns the chunks into DATA, dot-stuffed, with the same size limit, bare CR/LF rule and end-of-message policy.
/// </summary>
public class SmtpChunkingTests
{
    static Task<TestGateway> Gateway(int upstreamPort, string smtp = "") =>
        TestGateway.StartAsync($$"""
            listeners:
              - name: mail
                type: smtp
                listen: 127.0.0.1:0
                upstream: 127.0.0.1:{{upstreamPort}}
                policy: mail-in
                smtp:
                  banner: gw.test ESMTP
                  extensions: [PIPELINING, SIZE, 8BITMIME, CHUNKING]
                  upstream_tls: off
                  max_message: 64KiB
            {{smtp}}
            policies:
              mail-in:
                default: deny
                rules:
                  - deny: { command: DATA, size: "> 20KiB" }
                    name: big-message
                    reason: message too large for policy
                  - allow: { command: [MAIL, DATA] }
                  - allow: { rcpt_to: "*@local.example" }
            """);

    static async Task<RawSmtp> Begin(TestGateway gw)
    {
        var c = await RawSmtp.ConnectAsync(gw.Port("mail"));
        await c.ReplyAsync();
        Assert.Contains("CHUNKING", await c.CommandAsync("EHLO raw.test"));
        return c;
    }

    static async Task Envelope(RawSmtp c)
    {
        Assert.StartsWith("250", await c.CommandAsync("MAIL FROM:<a@remote.example>"));
        Assert.StartsWith("250", await c.CommandAsync("RCPT TO:<bob@local.example>"));
    }

    static string Bdat(string chunk, bool last = false) => $"BDAT {Encoding.UTF8.GetByteCount(chunk)}{(last ? " LAST" : "")}\r\n{chunk}";

    [Fact]
    public async Task Pipelined_chunks_arrive_as_one_message_with_dot_lines_and_split_crlf_intact()
    {
        await using var sink = await SmtpSink.StartAsync();
        await using var gw = await Gateway(sink.Port);
        await using var c = await Begin(gw);
        await Envelope(c);
        // A CRLF split across chunks, lines that start with dots, a would-be end of data, no final CRLF.
        var chunks = new[] { "Subject: chunks\r\n\r\n.first line\r", "\n..second\r\n.\r\nMAIL FROM:<evil@remote.example>\r\n", "last line" };
        await c.SendAsync(Bdat(chunks[0]) + Bdat(chunks[1]) + Bdat(chunks[2], last: true));
        Assert.StartsWith("250 2.0.0 " + Encoding.UTF8.GetByteCount(chunks[0]), await c.ReplyAsync());
        Assert.StartsWith("250 2.0.0 " + Encoding.UTF8.GetByteCount(chunks[1]), await c.ReplyAsync());
        Assert.StartsWith("250 2.0.0 stored", await c.ReplyAsync());
        Assert.StartsWith("250 2.0.0 OK", await c.CommandAsync("NOOP"));
        var m = Assert.Single(await sink.WaitForAsync(1));
        Assert.EndsWith(string.Concat(chunks) + "\r\n", m.Text);
        Assert.StartsWith("Received: from raw.test", m.Text);
        var line = await gw.WaitForLogAsync(l => l.Str("request")?.StartsWith("BDAT", StringComparison.Ordinal) == true);
        Assert.Equal(("allow", 250L), (line.Str("verdict"), line.Num("status")));
        // A second message on the same session, in one chunk.
        await Envelope(c);
        Assert.StartsWith("250 2.0.0 stored", await c.CommandAsync(Bdat("Subject: two\r\n\r\nsecond\r\n", last: true).TrimEnd('\n').TrimEnd('\r')));
        Assert.Equal(2, (await sink.WaitForAsync(2)).Count);
    }

    [Fact]
    public async Task Bare_newlines_in_chunks_are_refused_or_normalised_and_never_end_the_message()
    {
        const string smuggle = "Subject: s\r\n\r\nbody\n.\nMAIL FROM:<evil@remote.example>\r\n";
        await using (var sink = await SmtpSink.StartAsync())
        await using (var gw = await Gateway(sink.Port))
        {
            await using var c = await Begin(gw);
            await Envelope(c);
            await c.SendAsync(Bdat(smuggle, last: true));
            Assert.StartsWith("554 5.6.0", await c.ReplyAsync());
            Assert.StartsWith("250 2.0.0 OK", await c.CommandAsync("NOOP"));
            Assert.StartsWith("221", await c.CommandAsync("QUIT"));
            await gw.WaitForLogAsync(l => l.Str("request")?.StartsWith("BDAT", StringComparison.Ordinal) == true && l.Num("status") == 554);
            Assert.Equal(0, sink.Count);
        }
        await using (var sink = await SmtpSink.StartAsync())
        await using (var gw = await Gateway(sink.Port, "      bare_newline: normalize"))
        {
            await using var c = await Begin(gw);
            await Envelope(c);
            await c.SendAsync(Bdat(smuggle, last: true));
            Assert.StartsWith("250 2.0.0 stored", await c.ReplyAsync());
            var m = Assert.Single(await sink.WaitForAsync(1));
            Assert.EndsWith("body\r\n.\r\nMAIL FROM:<evil@remote.example>\r\n", m.Text);
            Assert.Equal("a@remote.example", m.From);
        }
    }

    [Fact]
    public async Task Size_limit_policy_sequence_and_reset_between_chunks()
    {
        await using var sink = await SmtpSink.StartAsync();
        await using var gw = await Gateway(sink.Port);
        await using var c = await Begin(gw);
        // Out of sequence: refused, and the chunk's bytes are read, not taken for commands.
        await c.SendAsync(Bdat("QUIT\r\n", last: true));
        Assert.StartsWith("503 5.5.1", await c.ReplyAsync());
        // Over max_message, sent across chunks: 552 at the chunk that passes it.
        await Envelope(c);
        var line = new string('x', 998) + "\r\n";
        var big = string.Concat(Enumerable.Repeat(line, 40));
        await c.SendAsync(Bdat(big) + Bdat(big, last: true));
        Assert.StartsWith("250", await c.ReplyAsync());
        Assert.StartsWith("552 5.3.4", await c.ReplyAsync());
        // Between the policy's 20 KiB and the limit: the end-of-message rule, as for DATA.
        await Envelope(c);
        await c.SendAsync(Bdat(string.Concat(Enumerable.Repeat(line, 30)), last: true));
        Assert.StartsWith("550 5.7.1 message too large for policy", await c.ReplyAsync());
        // RSET between chunks: the server never gets the half message.
        await Envelope(c);
        await c.SendAsync(Bdat("Subject: half\r\n"));
        Assert.StartsWith("250", await c.ReplyAsync());
        Assert.StartsWith("503", await c.CommandAsync("DATA"));
        Assert.StartsWith("250", await c.CommandAsync("RSET"));
        // And the session still delivers.
        await Envelope(c);
        await c.SendAsync(Bdat("Subject: ok\r\n\r\nsmall\r\n", last: true));
        Assert.StartsWith("250 2.0.0 stored", await c.ReplyAsync());
        var m = Assert.Single(await sink.WaitForAsync(1));
        Assert.EndsWith("\r\nsmall\r\n", m.Text);
        await gw.WaitForLogAsync(l => l.Str("rule") == "smtp.max_message" && l.Num("status") == 552);
        await gw.WaitForLogAsync(l => l.Str("rule") == "big-message" && l.Num("status") == 550);
        await gw.WaitForLogAsync(l => l.Str("reason") == "transaction reset between BDAT chunks");
    }
}
