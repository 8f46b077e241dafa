using Bastion.Tests.Ftp;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Bypass;

/// <summary>
/// Issue 9 on ftp without a fixed upstream (USER name@host): the server the client names is judged at every
/// address it resolves to, so no name or spelling of an inside address reaches an inside FTP server.
/// </summary>
public sealed class FtpBypassTests
{
    [Fact]
    public async Task A_server_named_at_login_is_judged_at_its_addresses()
    {
        var root = Scratch.NewDir("ftp-bypass");
        await using var inside = await PyFtpd.StartAsync(root);
        await using var lab = await PyFtpd.StartAsync(root, host: BypassFixture.Lab);
        await using var gw = await TestGateway.StartAsync($$"""
            resolver: { hosts: hosts.txt, dns: off }
            listeners:
              - { name: named, type: ftp, listen: 127.0.0.1:0, policy: out }
            policies:
              out:
                rules:
                  - deny: { host: "@private", not: { host: {{BypassFixture.Lab}} } }
                    name: ssrf
                    reason: inside address
                  - allow: {}
            """, new Dictionary<string, string> { ["hosts.txt"] = $"127.0.0.1 inside.test\n{BypassFixture.Lab} lab.test\n" });
        foreach (var host in new[] { "inside.test", "localhost", "0", "127.1", "INSIDE.TEST." })
        {
            await using var c = await FtpControl.ConnectAsync(gw.Port("named"));
            var (code, text) = await c.CommandAsync($"USER alice@{host}:{inside.Port}");
            Assert.True(code == 530, $"{host}: {code} {text}");
            Assert.Contains("denied by policy", text);
            var explain = await Proc.BastionAsync(["explain", "-c", gw.ConfigPath, "--listener", "named", $"USER alice@{host}:{inside.Port}"]);
            Assert.True(explain.ExitCode == 1, explain.ToString());
        }
        var line = await gw.WaitForLogAsync(l => l.Str("request") == $"USER alice@inside.test:{inside.Port}" && l.Str("verdict") == "deny");
        Assert.Equal("ssrf", line.Str("rule"));

        await using var ok = await FtpControl.ConnectAsync(gw.Port("named"));
        Assert.Equal(331, (await ok.CommandAsync($"USER alice@lab.test:{lab.Port}")).Code);
        Assert.Equal(230, (await ok.CommandAsync("PASS secret")).Code);
    }
}
