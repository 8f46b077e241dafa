using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Observability;

/// <summary>
/// `access: syslog`: RFC 5424 messages to a real rsyslogd over UDP and over TCP (octet counting), read back as rsyslog
/// parsed them; and to a Unix datagram socket (what /dev/log is), read raw.
/// </summary>
public sealed class SyslogTests : IAsyncLifetime
{
    TestOrigin _origin = null!;

    public async Task InitializeAsync() => _origin = await TestOrigin.StartAsync();

    public async Task DisposeAsync() => await _origin.DisposeAsync();

    static string Gateway(string address, string format = "json") => $$"""
        logging:
          access: syslog
          format: {{format}}
          syslog: { address: "{{address}}", facility: local3, app_name: bastion-test }
        listeners:
          - { name: web, type: http-proxy, listen: 127.0.0.1:0, policy: p }
        policies:
          p: { default: allow, rules: [{ deny: { host: ads.example.net } }] }
        """;

    [Fact]
    public async Task Rsyslog_parses_the_messages_sent_over_udp_and_tcp()
    {
        var dir = Scratch.NewDir("rsyslog");
        int udp = Wait.FreePort(), tcp = Wait.FreePort();
        var output = Path.Combine(dir, "received.log");
        File.WriteAllText(Path.Combine(dir, "rsyslog.conf"), $$"""
            global(workDirectory="{{dir}}")
            module(load="imudp")
            input(type="imudp" address="127.0.0.1" port="{{udp}}")
            module(load="imtcp")
            input(type="imtcp" address="127.0.0.1" port="{{tcp}}")
            template(name="fields" type="string" string="%protocol-version%|%syslogfacility-text%|%syslogseverity-text%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
            if $app-name == "bastion-test" then action(type="omfile" file="{{output}}" template="fields")
            """);
        await using var rsyslog = Proc.Start("rsyslogd", ["-n", "-f", Path.Combine(dir, "rsyslog.conf"), "-i", Path.Combine(dir, "rsyslog.pid")]);
        await Wait.ForPortAsync(tcp, TimeSpan.FromSeconds(30));

        int expected = 0;
        foreach (var address in new[] { $"udp://127.0.0.1:{udp}", $"tcp://127.0.0.1:{tcp}" })
        {
            await using var gw = await TestGateway.StartAsync(Gateway(address));
            Assert.Equal(0, (await Proc.CurlAsync("-x", gw.Url("web"), $"{_origin.Url}/100b")).ExitCode);
            await Proc.CurlAsync("-x", gw.Url("web"), "http://ads.example.net/x");
            expected += 2;
            await Wait.UntilAsync(() => File.Exists(output) && File.ReadAllLines(output).Length >= expected, TimeSpan.FromSeconds(30), $"{expected} messages from {address}");
        }
        var lines = File.ReadAllLines(output);
        Assert.Equal(4, lines.Length); // TCP framing kept the two messages apart
        foreach (var (line, i) in lines.Select((l, i) => (l, i)))
        {
            var f = line.Split('|', 8);
            Assert.Equal("1", f[0]);                                  // RFC 5424, parsed as such
            Assert.Equal("local3", f[1]);
            Assert.Equal(i % 2 == 0 ? "info" : "notice", f[2]);      // a deny is a notice
            Assert.Equal("bastion-test", f[3]);
            Assert.Equal(Environment.ProcessId.ToString(), f[4]);    // in-process gateway: our pid
            Assert.Equal("request", f[5]);
            Assert.Equal("-", f[6]);
            var json = JsonDocument.Parse(f[7].TrimStart()).RootElement;
            Assert.Equal(i % 2 == 0 ? "allow" : "deny", json.GetProperty("verdict").GetString());
        }
    }

    [Fact]
    public async Task A_unix_datagram_socket_gets_one_message_per_line_in_the_chosen_format()
    {
        var path = Path.Combine(Scratch.NewDir("devlog"), "log.sock");
        using var devlog = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        devlog.Bind(new UnixDomainSocketEndPoint(path));
        await using var gw = await TestGateway.StartAsync(Gateway(path, "squid"));
        await Proc.CurlAsync("-x", gw.Url("web"), $"{_origin.Url}/100b");
        var buf = new byte[8192];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        int n = await devlog.ReceiveAsync(buf, SocketFlags.None, cts.Token);
        var message = Encoding.UTF8.GetString(buf, 0, n);
        // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG; local3.info = 19*8+6.
        Assert.Matches($@"^<158>1 \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z \S+ bastion-test {Environment.ProcessId} request - \d+\.\d{{3}} +\d+ 127\.0\.0\.1 TCP_MISS/200 \d+ GET http://127\.0\.0\.1:{_origin.Port}/100b - HIER_DIRECT/127\.0\.0\.1 text/plain$", message);
    }

    [Fact]
    public async Task A_missing_local_socket_stops_run_with_one_line()
    {
        var dir = Scratch.NewDir("nolog");
        var cfg = Path.Combine(dir, "bastion.yaml");
        File.WriteAllText(cfg, Gateway(Path.Combine(dir, "missing.sock")));
        var r = await Proc.BastionAsync(["run", "--no-watch", "-c", cfg]);
        Assert.True(r.ExitCode == 1, r.ToString());
        Assert.Equal($"bastion: cannot start: cannot open access log syslog {dir}/missing.sock: no syslog socket at {dir}/missing.sock", r.Stderr.Trim());
    }
}
