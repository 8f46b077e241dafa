using System.Text;
using Bastion.Identity;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Smtp;

/// <summary>
/// SMTP AUTH towards clients (swaks and a raw socket) checked against the gateway's htpasswd users: the login sets
/// `user` for relay rules and the log, is offered only over TLS by default, and never reaches the server (an
/// aiosmtpd that offers AUTH itself and records whether anyone logged in).
/// </summary>
public class SmtpAuthTests
{
    const string Policy = """
        policies:
          mail-in:
            default: deny
            rules:
              - allow: { command: [MAIL, DATA] }
                name: envelope
              - allow: { rcpt_to: "*@local.example" }
                name: local
              - allow: { group: staff }
                name: staff-relay
              - deny: { not: { rcpt_to: "*@local.example" } }
                name: no-relay
                reason: relaying denied
        """;

    static readonly Dictionary<string, string> Users = new() { ["users.htpasswd"] = $"alice:{Htpasswd.HashBcrypt("secret", 4)}\n" };

    static async Task<TestGateway> Gateway(int upstreamPort, string smtp)
    {
        var dir = Scratch.NewDir("smtp-auth");
        var (cert, key) = TestCerts.WritePem(dir, "gw", TestCerts.Localhost());
        return await TestGateway.StartAsync($$"""
            identity:
              users: users.htpasswd
              groups: { staff: [alice] }
            listeners:
              - name: mail
                type: smtp
                listen: 127.0.0.1:0
                upstream: 127.0.0.1:{{upstreamPort}}
                authenticate: true
                policy: mail-in
                smtp:
                  banner: gw.test ESMTP
                  tls: { cert: {{cert}}, key: {{key}} }
                  upstream_tls: off
            {{smtp}}
            {{Policy}}
            """, Users);
    }

    static Task<ProcResult> Swaks(int port, params string[] extra) =>
        Proc.RunAsync("swaks", ["--server", $"127.0.0.1:{port}", "--tls", "--from", "alice@local.example", "--ehlo", "auth.test", .. extra]);

    [Fact]
    public async Task Swaks_logs_in_with_plain_and_login_over_starttls_and_may_relay_the_server_never_sees_auth()
    {
        await using var sink = await SmtpSink.StartAsync(auth: true);
        await using var gw = await Gateway(sink.Port, "");
        var port = gw.Port("mail");
        foreach (var mech in new[] { "PLAIN", "LOGIN" })
        {
            var r = await Swaks(port, "--to", "friend@elsewhere.example", "--auth", mech, "--auth-user", "alice", "--auth-password", "secret",
                "--body", $"relayed after {mech}");
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Contains("235 2.7.0", r.Stdout);
        }
        // Without a login the same recipient is a relay attempt.
        var anon = await Swaks(port, "--to", "friend@elsewhere.example", "--body", "anonymous");
        Assert.NotEqual(0, anon.ExitCode);
        Assert.Contains("550 5.7.1 relaying denied", anon.Stdout);

        var all = await sink.WaitForAsync(2);
        Assert.Equal(2, all.Count);
        Assert.All(all, m => Assert.False(m.Auth, "the client's AUTH reached the server"));
        Assert.All(all, m => Assert.Contains("with ESMTPSA id", m.Text));
        var login = await gw.WaitForLogAsync(l => l.Str("request") == "AUTH LOGIN");
        Assert.Equal(("allow", "authenticate", "alice", 235L), (login.Str("verdict"), login.Str("rule"), login.Str("user"), login.Num("status")));
        var relay = await gw.WaitForLogAsync(l => l.Str("rule") == "staff-relay");
        Assert.Equal(("alice", "RCPT TO:<friend@elsewhere.example>"), (relay.Str("user"), relay.Str("request")));
        await gw.WaitForLogAsync(l => l.Str("rule") == "no-relay" && l.Str("user") is null);
    }

    [Fact]
    public async Task A_wrong_password_is_535_logged_and_counted()
    {
        await using var sink = await SmtpSink.StartAsync();
        await using var gw = await Gateway(sink.Port, "");
        var r = await Swaks(gw.Port("mail"), "--to", "bob@local.example", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "wrong");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("535 5.7.8", r.Stdout);
        var line = await gw.WaitForLogAsync(l => l.Str("request") == "AUTH PLAIN");
        Assert.Equal(("deny", "authenticate", "alice", 535L), (line.Str("verdict"), line.Str("rule"), line.Str("user"), line.Num("status")));
        Assert.Contains("bad credentials for 'alice'", line.Str("reason"));
        Assert.Equal(0, sink.Count);
    }

    [Fact]
    public async Task Auth_is_offered_only_over_tls_and_every_wrong_turn_has_its_reply()
    {
        await using var sink = await SmtpSink.StartAsync(auth: true);
        await using var gw = await Gateway(sink.Port, "");
        await using var c = await RawSmtp.ConnectAsync(gw.Port("mail"));
        await c.ReplyAsync();
        var ehlo = await c.CommandAsync("EHLO raw.test");
        Assert.DoesNotContain("AUTH", ehlo);
        Assert.StartsWith("538 5.7.11", await c.CommandAsync("AUTH PLAIN AGFsaWNlAHNlY3JldA=="));
        Assert.StartsWith("220", await c.CommandAsync("STARTTLS"));
        await c.StartTlsAsync();
        Assert.StartsWith("503", await c.CommandAsync("AUTH PLAIN AGFsaWNlAHNlY3JldA=="));
        Assert.Contains("AUTH PLAIN LOGIN", await c.CommandAsync("EHLO raw.test"));
        Assert.StartsWith("504 5.5.4", await c.CommandAsync("AUTH CRAM-MD5"));
        Assert.StartsWith("334 ", await c.CommandAsync("AUTH PLAIN"));
        Assert.StartsWith("501 5.0.0", await c.CommandAsync("*"));
        Assert.StartsWith("501 5.5.2", await c.CommandAsync("AUTH PLAIN !!!!"));
        Assert.StartsWith("334 VXNlcm5hbWU6", await c.CommandAsync("AUTH LOGIN"));
        Assert.StartsWith("334 UGFzc3dvcmQ6", await c.CommandAsync(Convert.ToBase64String("alice"u8)));
        Assert.StartsWith("235 2.7.0", await c.CommandAsync(Convert.ToBase64String("secret"u8)));
        Assert.StartsWith("503 5.5.1 already", await c.CommandAsync("AUTH PLAIN AGFsaWNlAHNlY3JldA=="));
        // RFC 4954 5: AUTH= on MAIL is accepted when AUTH is offered, and not passed on.
        Assert.StartsWith("250", await c.CommandAsync("MAIL FROM:<alice@local.example> AUTH=<>"));
        Assert.StartsWith("250", await c.CommandAsync("RCPT TO:<x@elsewhere.example>"));
        Assert.StartsWith("354", await c.CommandAsync("DATA"));
        Assert.StartsWith("250", await c.CommandAsync("Subject: raw\r\n\r\nhi\r\n."));
        var m = Assert.Single(await sink.WaitForAsync(1));
        Assert.False(m.Auth);
        Assert.DoesNotContain(m.Options, o => o.StartsWith("AUTH", StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public async Task Auth_required_refuses_mail_before_login_and_plain_auth_can_be_allowed()
    {
        await using var sink = await SmtpSink.StartAsync();
        await using var gw = await Gateway(sink.Port, """
                  auth: required
                  auth_without_tls: true
            """);
        await using var c = await RawSmtp.ConnectAsync(gw.Port("mail"));
        await c.ReplyAsync();
        Assert.Contains("AUTH PLAIN LOGIN", await c.CommandAsync("EHLO raw.test"));
        Assert.StartsWith("530 5.7.0", await c.CommandAsync("MAIL FROM:<alice@local.example>"));
        var plain = Convert.ToBase64String(Encoding.UTF8.GetBytes("\0alice\0secret"));
        Assert.StartsWith("235", await c.CommandAsync($"AUTH PLAIN {plain}"));
        Assert.StartsWith("250", await c.CommandAsync("MAIL FROM:<alice@local.example>"));
        var denied = await gw.WaitForLogAsync(l => l.Str("request") == "MAIL FROM:<alice@local.example>" && l.Num("status") == 530);
        Assert.Equal("authenticate", denied.Str("rule"));
    }

    [Fact]
    public async Task Failed_logins_are_throttled_per_address_like_the_http_logins()
    {
        await using var sink = await SmtpSink.StartAsync();
        await using var gw = await Gateway(sink.Port, "      auth_without_tls: true");
        await using var c = await RawSmtp.ConnectAsync(gw.Port("mail"));
        await c.ReplyAsync();
        await c.CommandAsync("EHLO raw.test");
        var replies = new List<string>();
        // The bucket refills one failure a second, so on a slow machine a few more may be checked before the first 454.
        while (replies.Count < LoginThrottle.Burst + 10 && (replies.Count == 0 || !replies[^1].StartsWith("454", StringComparison.Ordinal)))
            replies.Add(await c.CommandAsync("AUTH PLAIN " + Convert.ToBase64String(Encoding.UTF8.GetBytes($"\0alice\0wrong{replies.Count}"))));
        Assert.All(replies.Take(LoginThrottle.Burst), r => Assert.StartsWith("535 5.7.8", r));
        Assert.StartsWith("454 4.7.0", replies[^1]);
        // Throttled means not checked at all: the right password is refused too, for now.
        Assert.StartsWith("454 4.7.0", await c.CommandAsync("AUTH PLAIN " + Convert.ToBase64String(Encoding.UTF8.GetBytes("\0alice\0secret"))));
        var line = await gw.WaitForLogAsync(l => l.Str("request") == "AUTH PLAIN" && l.Num("status") == 454);
        Assert.Equal(("deny", "authenticate"), (line.Str("verdict"), line.Str("rule")));
    }
}
