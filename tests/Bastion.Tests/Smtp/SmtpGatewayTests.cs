using System.Text;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Smtp;

/// <summary>
/// The smtp listener end to end: real clients (swaks, Python's smtplib, a raw socket for exact bytes) through the
/// gateway to a real server (aiosmtpd) that stores what it accepts.
/// </summary>
public class SmtpGatewayTests
{
    const string Policy = """
        policies:
          mail-in:
            default: deny
            rules:
              - deny: { mail_from: "*@spammer.example" }
                name: bad-sender
                reason: sender blocked
              - deny: { command: DATA, size: "> 20KiB" }
                name: big-message
                reason: message too large for policy
              - allow: { command: [MAIL, DATA] }
                name: mail-data
              - allow: { rcpt_to: ["*@local.example", "Postmaster"] }
                name: local-rcpt
              - deny: { not: { rcpt_to: "*@local.example" } }
                name: no-relay
                reason: relaying denied
        """;

    static Task<TestGateway> Gateway(int upstreamPort, string smtp = "", string upstream = "", IDictionary<string, string>? files = null) =>
        TestGateway.StartAsync($"""
            listeners:
              - name: mail
                type: smtp
                listen: 127.0.0.1:0
                upstream: {(upstream.Length > 0 ? upstream : $"127.0.0.1:{upstreamPort}")}
                policy: mail-in
                smtp:
                  banner: gw.test ESMTP Bastion
                  max_message: 64KiB
            {smtp}
            upstreams:
              pool:
                targets: ["127.0.0.1:1", "127.0.0.1:{upstreamPort}"]
            {Policy}
            """, files);

    /// <summary>MAIL, RCPT and DATA accepted: the next bytes are the message.</summary>
    static async Task BeginMessageAsync(RawSmtp c)
    {
        Assert.StartsWith("250", await c.CommandAsync("MAIL FROM:<a@remote.example>"));
        Assert.StartsWith("250", await c.CommandAsync("RCPT TO:<bob@local.example>"));
        Assert.StartsWith("354", await c.CommandAsync("DATA"));
    }

    static Task<ProcResult> Python(string code) => Proc.RunAsync("/usr/bin/python3", ["-c", code], TimeSpan.FromSeconds(60));

    [Fact]
    public async Task Smtplib_delivers_with_dot_stuffed_lines_intact_and_the_banner_is_the_gateways()
    {
        await using var sink = await SmtpSink.StartAsync();
        await using var gw = await Gateway(sink.Port);
        var port = gw.Port("mail");
        var r = await Python($$"""
            import smtplib
            body = "Subject: dots\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\nend\r\n"
            s = smtplib.SMTP("127.0.0.1", {{port}}, timeout=20)
            print("banner", s.ehlo_resp.decode() if s.ehlo_resp else "", s.docmd("NOOP"))
            code, msg = s.ehlo("client.test")
            print("EHLO", code, msg.decode().replace("\n", "|"))
            print("SEND", s.sendmail("alice@remote.example", ["bob@local.example"], body))
            s.quit()
            """);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("SEND {}", r.Stdout);
        // The EHLO reply is the gateway's: its name and only the allowed extensions.
        Assert.Contains("EHLO 250 gw.test greets client.test|PIPELINING|SIZE 65536|8BITMIME", r.Stdout);
        Assert.DoesNotContain("sink.test", r.Stdout);
        var m = Assert.Single(await sink.WaitForAsync(1));
        Assert.Equal("alice@remote.example", m.From);
        Assert.Equal(["bob@local.example"], m.Rcpt);
        // The server un-stuffs what the client stuffed: the lines arrive exactly as written.
        Assert.EndsWith("Subject: dots\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\nend\r\n", m.Text);
        Assert.StartsWith("Received: from client.test ([127.0.0.1])\r\n\tby gw.test (Bastion) with ESMTP id ", m.Text);
        var msg = await gw.WaitForLogAsync(l => l.Str("request")?.StartsWith("DATA", StringComparison.Ordinal) == true);
        Assert.Equal(("allow", 250L), (msg.Str("verdict"), msg.Num("status")));
        Assert.Contains("from=<alice@remote.example> to=<bob@local.example>", msg.Str("request"));
    }

    [Fact]
    public async Task Swaks_pipelining_through_the_gateway()
    {
        await using var sink = await SmtpSink.StartAsync();
        await using var gw = await Gateway(sink.Port);
        var r = await Proc.RunAsync("swaks", ["--server", $"127.0.0.1:{gw.Port("mail")}", "--pipeline", "--from", "a@remote.example",
            "--to", "x@local.example,y@local.example", "--ehlo", "swaks.test", "--body", "hello via swaks", "--h-Subject", "piped"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("250 2.0.0 stored", r.Stdout);
        var m = Assert.Single(await sink.WaitForAsync(1));
        Assert.Equal(["x@local.example", "y@local.example"], m.Rcpt);
        Assert.Contains("hello via swaks", m.Text);
    }

    [Fact]
    public async Task Relay_and_sender_denials_and_mixed_recipients()
    {
        await using var sink = await SmtpSink.StartAsync();
        await using var gw = await Gateway(sink.Port);
        await using var c = await RawSmtp.ConnectAsync(gw.Port("mail"));
        Assert.StartsWith("220 gw.test ESMTP Bastion", await c.ReplyAsync());
        Assert.StartsWith("250", await c.CommandAsync("EHLO raw.test"));
        Assert.StartsWith("550 5.7.1 sender blocked", await c.CommandAsync("MAIL FROM:<x@spammer.example>"));
        Assert.StartsWith("250", await c.CommandAsync("MAIL FROM:<a@remote.example>"));
        Assert.StartsWith("550 5.7.1 relaying denied", await c.CommandAsync("RCPT TO:<victim@elsewhere.example>"));
        Assert.StartsWith("250", await c.CommandAsync("RCPT TO:<bob@local.example>"));
        Assert.StartsWith("354", await c.CommandAsync("DATA"));
        Assert.StartsWith("250 2.0.0 stored", await c.CommandAsync("Subject: mixed\r\n\r\nhi\r\n."));
        Assert.StartsWith("221", await c.CommandAsync("QUIT"));
        var m = Assert.Single(await sink.WaitForAsync(1));
        Assert.Equal(["bob@local.example"], m.Rcpt);
        var denied = await gw.WaitForLogAsync(l => l.Str("rule") == "no-relay");
        Assert.Equal(("deny", 550L, "RCPT TO:<victim@elsewhere.example>"), (denied.Str("verdict"), denied.Num("status"), denied.Str("request")));
        var msg = await gw.WaitForLogAsync(l => l.Str("request")?.StartsWith("DATA", StringComparison.Ordinal) == true);
        Assert.Contains("denied=1", msg.Str("request"));
    }

    [Fact]
    public async Task Size_limits_declared_undeclared_and_by_policy()
    {
        await using var sink = await SmtpSink.StartAsync();
        await using var gw = await Gateway(sink.Port);
        await using var c = await RawSmtp.ConnectAsync(gw.Port("mail"));
        await c.ReplyAsync();
        await c.CommandAsync("EHLO raw.test");
        // Declared: refused up front.
        Assert.StartsWith("552 5.3.4", await c.CommandAsync("MAIL FROM:<a@remote.example> SIZE=100000"));
        // Undeclared: refused while streaming, the rest read and dropped, the session goes on.
        await BeginMessageAsync(c);
        var line = new string('x', 998) + "\r\n";
        Assert.StartsWith("552 5.3.4", await c.CommandAsync(string.Concat(Enumerable.Repeat(line, 100)) + "."));
        // Between the policy's 20 KiB and the limit: denied by the rule at end of data.
        await BeginMessageAsync(c);
        Assert.StartsWith("550 5.7.1 message too large for policy", await c.CommandAsync(string.Concat(Enumerable.Repeat(line, 30)) + "."));
        // And a small one still goes through on the same session.
        Assert.StartsWith("250", await c.CommandAsync("MAIL FROM:<a@remote.example> SIZE=10"));
        Assert.StartsWith("250", await c.CommandAsync("RCPT TO:<bob@local.example>"));
        Assert.StartsWith("354", await c.CommandAsync("DATA"));
        Assert.StartsWith("250 2.0.0 stored", await c.CommandAsync("small\r\n."));
        var m = Assert.Single(await sink.WaitForAsync(1));
        Assert.EndsWith("\r\nsmall\r\n", m.Text);
        await gw.WaitForLogAsync(l => l.Str("rule") == "big-message" && l.Num("status") == 550);
        await gw.WaitForLogAsync(l => l.Str("rule") == "smtp.max_message" && l.Num("status") == 552);
    }

    [Fact]
    public async Task Garbage_and_out_of_sequence_commands_get_500_501_503_and_the_session_goes_on()
    {
        await using var sink = await SmtpSink.StartAsync();
        await using var gw = await Gateway(sink.Port);
        await using var c = await RawSmtp.ConnectAsync(gw.Port("mail"));
        await c.ReplyAsync();
        Assert.StartsWith("503", await c.CommandAsync("MAIL FROM:<a@remote.example>"));
        Assert.StartsWith("500", await c.CommandAsync("XYZZY"));
        Assert.StartsWith("500", await c.CommandAsync("\u0001\u00ff garbage"));
        Assert.StartsWith("501", await c.CommandAsync("EHLO bad_name!"));
        Assert.StartsWith("250", await c.CommandAsync("EHLO raw.test"));
        Assert.StartsWith("503", await c.CommandAsync("RCPT TO:<bob@local.example>"));
        Assert.StartsWith("503", await c.CommandAsync("DATA"));
        Assert.StartsWith("501", await c.CommandAsync("MAIL FROM:<a b@x>"));
        Assert.StartsWith("553", await c.CommandAsync("MAIL FROM:<a%b@remote.example>"));
        Assert.StartsWith("553", await c.CommandAsync("MAIL FROM:<@hop.example:a@remote.example>"));
        Assert.StartsWith("555", await c.CommandAsync("MAIL FROM:<a@remote.example> XFOO=1"));
        Assert.StartsWith("500 5.5.2", await c.CommandAsync(new string('A', 5000)));
        await c.SendAsync("NOOP\n");
        Assert.StartsWith("500 5.5.2", await c.ReplyAsync());
        Assert.StartsWith("502", await c.CommandAsync("EXPN staff"));
        Assert.StartsWith("252", await c.CommandAsync("VRFY bob"));
        Assert.StartsWith("250", await c.CommandAsync("NOOP"));
        Assert.StartsWith("250", await c.CommandAsync("MAIL FROM:<a@remote.example>"));
        Assert.StartsWith("503", await c.CommandAsync("MAIL FROM:<a@remote.example>"));
        Assert.StartsWith("503", await c.CommandAsync("DATA"));
        Assert.StartsWith("250", await c.CommandAsync("RSET"));
        Assert.StartsWith("221", await c.CommandAsync("QUIT"));
        Assert.Equal(0, sink.Count);
    }

    public static readonly string[] SmugglingEnds =
    [
        "\n.\n", "\r.\r", "\r.\n", "\n.\r", "\n.\r\n", "\r.\r\n", "\r\n.\n", "\r\n.\r", "\r\n.\rX", "\n\n.\n\n", "\r\r.\r\r",
        "\r\n\x00.\r\n", "\r\n.\n\r\n",
    ];

    static string Smuggled(string end) =>
        "Subject: first\r\n\r\nbody" + end + "MAIL FROM:<evil@remote.example>\r\nRCPT TO:<victim@local.example>\r\nDATA\r\n" +
        "Subject: forged\r\n\r\nforged\r\n";

    [Fact]
    public async Task No_smuggling_variant_delivers_a_second_message_refused_by_default()
    {
        await using var sink = await SmtpSink.StartAsync();
        await using var gw = await Gateway(sink.Port);
        await using var c = await RawSmtp.ConnectAsync(gw.Port("mail"));
        await c.ReplyAsync();
        await c.CommandAsync("EHLO raw.test");
        foreach (var end in SmugglingEnds)
        {
            await BeginMessageAsync(c);
            var reply = await c.CommandAsync(Smuggled(end) + ".");
            // "\r\n\0.\r\n" has no bare newline: one message with a NUL in it, the forged part as its text.
            if (end == "\r\n\x00.\r\n") Assert.StartsWith("250", reply);
            else Assert.StartsWith("554 5.6.0", reply);
            // Nothing after the bare newline was read as a command: the next reply answers our next command.
            Assert.StartsWith("250 2.0.0 OK", await c.CommandAsync("NOOP"));
        }
        Assert.StartsWith("221", await c.CommandAsync("QUIT"));
        var all = sink.Messages();
        var m = Assert.Single(all);
        Assert.Equal("a@remote.example", m.From);
        Assert.DoesNotContain(all, x => x.From.Contains("evil", StringComparison.Ordinal));
    }

    [Fact]
    public async Task No_smuggling_variant_delivers_a_second_message_when_normalising()
    {
        await using var sink = await SmtpSink.StartAsync();
        await using var gw = await Gateway(sink.Port, smtp: "      bare_newline: normalize");
        await using var c = await RawSmtp.ConnectAsync(gw.Port("mail"));
        await c.ReplyAsync();
        await c.CommandAsync("EHLO raw.test");
        foreach (var end in SmugglingEnds)
        {
            await BeginMessageAsync(c);
            Assert.StartsWith("250 2.0.0 stored", await c.CommandAsync(Smuggled(end) + "."));
        }
        Assert.StartsWith("221", await c.CommandAsync("QUIT"));
        var all = await sink.WaitForAsync(SmugglingEnds.Length);
        // One message per DATA, each carrying the would-be second message as text; never a message from evil@.
        Assert.Equal(SmugglingEnds.Length, all.Count);
        Assert.All(all, m => Assert.Equal("a@remote.example", m.From));
        Assert.All(all, m => Assert.Contains("MAIL FROM:<evil@remote.example>", m.Text));
        Assert.All(all, m => Assert.DoesNotContain("\n", m.Text.Replace("\r\n", "")));
    }

    [Fact]
    public async Task Starttls_on_both_legs_and_nothing_pipelined_before_it_survives()
    {
        await using var sink = await SmtpSink.StartAsync(tls: true);
        var dir = Scratch.NewDir("smtp-tls");
        var (cert, key) = TestCerts.WritePem(dir, "gw", TestCerts.Localhost());
        await using var gw = await Gateway(sink.Port, smtp: $$"""
                  tls: { cert: {{cert}}, key: {{key}} }
                  upstream_tls: required
                  upstream_ca: {{cert}}
                  extensions: [PIPELINING, SIZE, 8BITMIME, STARTTLS]
            """);
        var r = await Proc.RunAsync("swaks", ["--server", $"127.0.0.1:{gw.Port("mail")}", "--tls", "--from", "a@remote.example",
            "--to", "bob@local.example", "--ehlo", "tls.test", "--body", "over tls"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        var m = Assert.Single(await sink.WaitForAsync(1));
        Assert.True(m.Tls, "the gateway-to-server leg was not TLS");
        Assert.Contains("with ESMTPS id", m.Text);
        var closed = await gw.WaitForLogAsync(l => l.Str("event") == "connection");
        Assert.Matches("client=TLSv1\\.[23] upstream=TLSv1\\.[23]", closed.Str("tls"));

        // CVE-2011-0411: a command sent in the clear right behind STARTTLS is discarded, not run inside TLS.
        await using var c = await RawSmtp.ConnectAsync(gw.Port("mail"));
        await c.ReplyAsync();
        await c.CommandAsync("EHLO raw.test");
        await c.SendAsync("STARTTLS\r\nHELP\r\n");
        Assert.StartsWith("220 2.0.0", await c.ReplyAsync());
        await c.StartTlsAsync();
        Assert.StartsWith("250 2.0.0 OK", await c.CommandAsync("NOOP"));
        await gw.WaitForLogAsync(l => l.Str("reason")?.Contains("CVE-2011-0411", StringComparison.Ordinal) == true);
    }

    [Fact]
    public async Task Commands_pipelined_behind_the_end_of_data_are_read_in_order()
    {
        // A message is read off the socket in large pieces: what a piece holds past the end of data is the next
        // commands, read from there in order, for one message after another.
        await using var sink = await SmtpSink.StartAsync();
        await using var gw = await Gateway(sink.Port);
        await using var c = await RawSmtp.ConnectAsync(gw.Port("mail"));
        await c.ReplyAsync();
        await c.CommandAsync("EHLO raw.test");
        await BeginMessageAsync(c);
        await c.SendAsync("Subject: one\r\n\r\nfirst\r\n.\r\nMAIL FROM:<c@remote.example>\r\nRCPT TO:<bob@local.example>\r\nDATA\r\n");
        Assert.StartsWith("250 2.0.0 stored", await c.ReplyAsync());
        Assert.StartsWith("250", await c.ReplyAsync());
        Assert.StartsWith("250", await c.ReplyAsync());
        Assert.StartsWith("354", await c.ReplyAsync());
        await c.SendAsync("Subject: two\r\n\r\nsecond\r\n.\r\nNOOP\r\n");
        Assert.StartsWith("250 2.0.0 stored", await c.ReplyAsync());
        Assert.StartsWith("250 2.0.0 OK", await c.ReplyAsync());
        await BeginMessageAsync(c);
        Assert.StartsWith("250 2.0.0 stored", await c.CommandAsync("Subject: three\r\n\r\nthird\r\n."));
        Assert.StartsWith("221", await c.CommandAsync("QUIT"));
        var all = await sink.WaitForAsync(3);
        Assert.Equal(["a@remote.example", "c@remote.example", "a@remote.example"], all.Select(m => m.From));
        Assert.Contains("first", all[0].Text);
        Assert.Contains("second", all[1].Text);
        Assert.Contains("third", all[2].Text);
    }

    [Fact]
    public async Task Starttls_pipelined_behind_the_end_of_data_discards_what_follows_it()
    {
        await using var sink = await SmtpSink.StartAsync();
        var dir = Scratch.NewDir("smtp-tls-pipelined");
        var (cert, key) = TestCerts.WritePem(dir, "gw", TestCerts.Localhost());
        await using var gw = await Gateway(sink.Port, smtp: $$"""
                  tls: { cert: {{cert}}, key: {{key}} }
                  upstream_tls: off
                  extensions: [PIPELINING, SIZE, 8BITMIME, STARTTLS]
            """);
        await using var c = await RawSmtp.ConnectAsync(gw.Port("mail"));
        await c.ReplyAsync();
        await c.CommandAsync("EHLO raw.test");
        await BeginMessageAsync(c);
        // CVE-2011-0411 with the STARTTLS in the same read as the message's end: HELP, sent in the clear, is dropped.
        await c.SendAsync("Subject: x\r\n\r\nbody\r\n.\r\nSTARTTLS\r\nHELP\r\n");
        Assert.StartsWith("250 2.0.0 stored", await c.ReplyAsync());
        Assert.StartsWith("220 2.0.0", await c.ReplyAsync());
        await c.StartTlsAsync();
        Assert.StartsWith("250 2.0.0 OK", await c.CommandAsync("NOOP"));
        var log = await gw.WaitForLogAsync(l => l.Str("reason")?.Contains("CVE-2011-0411", StringComparison.Ordinal) == true);
        Assert.StartsWith("6 bytes pipelined", log.Str("reason"));
        Assert.Single(await sink.WaitForAsync(1));

        // Inside TLS a message past 32 KiB is read off the TLS stream directly, and what follows its end still
        // reaches the next command: 40 KiB is over the policy's 20 KiB (550), and the NOOP behind it is answered.
        Assert.StartsWith("250", await c.CommandAsync("EHLO raw.test"));
        await BeginMessageAsync(c);
        var line = new string('x', 78) + "\r\n";
        await c.SendAsync("Subject: big\r\n\r\n" + string.Concat(Enumerable.Repeat(line, 512)) + ".\r\nNOOP\r\n");
        Assert.StartsWith("550 5.7.1", await c.ReplyAsync());
        Assert.StartsWith("250 2.0.0 OK", await c.ReplyAsync());
        Assert.StartsWith("221", await c.CommandAsync("QUIT"));
        Assert.Single(sink.Messages());
    }

    [Fact]
    public async Task Upstream_down_is_a_421_greeting_and_a_group_fails_over()
    {
        var dead = Wait.FreePort();
        await using (var gw = await Gateway(dead))
        {
            await using var c = await RawSmtp.ConnectAsync(gw.Port("mail"));
            Assert.StartsWith("421 4.4.1", await c.ReplyAsync());
            var closed = await gw.WaitForLogAsync(l => l.Str("event") == "connection");
            Assert.Equal(421L, closed.Num("status"));
        }
        await using var sink = await SmtpSink.StartAsync();
        await using var gw2 = await Gateway(sink.Port, upstream: "pool");
        for (int i = 0; i < 2; i++)
        {
            var r = await Proc.RunAsync("swaks", ["--server", $"127.0.0.1:{gw2.Port("mail")}", "--from", "a@remote.example",
                "--to", "bob@local.example", "--body", $"failover {i}"]);
            Assert.True(r.ExitCode == 0, r.ToString());
        }
        Assert.Equal(2, (await sink.WaitForAsync(2)).Count);
    }

    [Fact]
    public async Task Upstream_garbage_is_a_421_and_nothing_is_accepted()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        var server = Task.Run(async () =>
        {
            using var s = await listener.AcceptSocketAsync();
            await s.SendAsync(Encoding.ASCII.GetBytes("220 fake\r\n"));
            var buf = new byte[1024];
            await s.ReceiveAsync(buf); // EHLO
            await s.SendAsync(Encoding.ASCII.GetBytes("250 fake\r\n"));
            await s.ReceiveAsync(buf); // MAIL
            await s.SendAsync(Encoding.ASCII.GetBytes("hello, I am not SMTP\r\n"));
            await s.ReceiveAsync(buf);
        });
        await using var gw = await Gateway(port);
        await using var c = await RawSmtp.ConnectAsync(gw.Port("mail"));
        await c.ReplyAsync();
        Assert.StartsWith("250", await c.CommandAsync("EHLO raw.test"));
        Assert.StartsWith("421 4.4.2", await c.CommandAsync("MAIL FROM:<a@remote.example>"));
        Assert.Null(await c.ReplyAsync());
        var line = await gw.WaitForLogAsync(l => l.Str("request") == "MAIL FROM:<a@remote.example>");
        Assert.Contains("garbage", line.Str("reason"));
    }

    [Fact]
    public async Task Many_parallel_senders_all_arrive()
    {
        await using var sink = await SmtpSink.StartAsync();
        await using var gw = await Gateway(sink.Port);
        var port = gw.Port("mail");
        var r = await Python($$"""
            import smtplib, threading
            errors = []
            def send(i):
                try:
                    s = smtplib.SMTP("127.0.0.1", {{port}}, timeout=30)
                    for j in range(5):
                        s.sendmail("s%d@remote.example" % i, ["bob@local.example"], "Subject: %d-%d\r\n\r\nbody %d-%d\r\n" % (i, j, i, j))
                    s.quit()
                except Exception as e:
                    errors.append(repr(e))
            ts = [threading.Thread(target=send, args=(i,)) for i in range(20)]
            [t.start() for t in ts]
            [t.join() for t in ts]
            print("errors", errors)
            """);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("errors []", r.Stdout);
        var all = await sink.WaitForAsync(100);
        Assert.Equal(100, all.Select(m => m.Text[m.Text.IndexOf("Subject:", StringComparison.Ordinal)..]).Distinct().Count());
    }
}
