using System.Net;
using System.Net.Sockets;
using System.Text;
using Bastion.Identity;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Socks;

public class Socks5Tests
{
    const string Policy = """
        policies:
          out:
            default: deny
            rules:
              - deny: { host: "*.invalid" }
                name: no-invalid
                reason: invalid names
              - allow: { host: [127.0.0.1, localhost, "::1"] }
                name: loopback
        """;

    static Task<TestGateway> Gateway(string extraListeners = "", string policy = Policy, bool auth = false) =>
        TestGateway.StartAsync($"""
            identity:
              users: users.htpasswd
            listeners:
              - name: socks
                type: socks5
                listen: 127.0.0.1:0
                policy: out
                socks4: true
                authenticate: {(auth ? "true" : "false")}
                limits: {"{"} header_timeout: 1s {"}"}
            {extraListeners}
            {policy}
            """, new Dictionary<string, string> { ["users.htpasswd"] = $"alice:{Htpasswd.HashBcrypt("secret", 4)}\n" });

    /// <summary>Greets with no-auth and returns the open socket.</summary>
    static async Task<Socket> Greet(TestGateway gw, string listener = "socks")
    {
        var s = await Sock.ConnectAsync(gw.Port(listener));
        await s.SendAsync([5, 1, 0]);
        Assert.Equal(new byte[] { 5, 0 }, await s.ReadExactlyAsync(2));
        return s;
    }

    static byte[] DomainRequest(byte cmd, string host, int port) =>
        [5, cmd, 0, 3, (byte)host.Length, .. Encoding.ASCII.GetBytes(host), (byte)(port >> 8), (byte)port];

    static byte[] Ipv4Request(byte cmd, IPAddress ip, int port) =>
        [5, cmd, 0, 1, .. ip.GetAddressBytes(), (byte)(port >> 8), (byte)port];

    /// <summary>Reads a SOCKS5 reply (IPv4 or IPv6 bound address) and returns it whole.</summary>
    static async Task<byte[]> ReadReply(Socket s)
    {
        var head = await s.ReadExactlyAsync(4);
        var rest = await s.ReadExactlyAsync(head[3] == 4 ? 18 : 6);
        return [.. head, .. rest];
    }

    [Fact]
    public async Task Curl_socks5_and_socks5_hostname_reach_the_origin()
    {
        await using var origin = await TestOrigin.StartAsync();
        await using var gw = await Gateway();
        var r = await Proc.CurlAsync("--socks5", $"127.0.0.1:{gw.Port("socks")}", $"{origin.Url}/100b");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal(100, r.Stdout.Length);
        r = await Proc.CurlAsync("--socks5-hostname", $"127.0.0.1:{gw.Port("socks")}", $"http://localhost:{origin.Port}/bytes/100000");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal(100000, r.Stdout.Length);
        var decision = await gw.WaitForLogAsync(l => l.Str("event") == "request" && l.Str("request") == $"CONNECT localhost:{origin.Port}");
        Assert.Equal(("allow", "loopback", 0L), (decision.Str("verdict"), decision.Str("rule"), decision.Num("status")));
        var conn = await gw.WaitForLogAsync(l => l.Str("event") == "connection" && l.Str("request") == $"CONNECT localhost:{origin.Port}");
        Assert.True(conn.Num("bytes_out") > 100000, conn.ToString());
        Assert.True(conn.Num("bytes_in") > 50, conn.ToString());
    }

    [Fact]
    public async Task Curl_with_username_and_password()
    {
        await using var origin = await TestOrigin.StartAsync();
        await using var gw = await Gateway(auth: true);
        var proxy = $"127.0.0.1:{gw.Port("socks")}";
        var ok = await Proc.CurlAsync("--socks5-hostname", proxy, "--proxy-user", "alice:secret", $"{origin.Url}/100b");
        Assert.True(ok.ExitCode == 0, ok.ToString());
        Assert.Equal(100, ok.Stdout.Length);
        var conn = await gw.WaitForLogAsync(l => l.Str("event") == "connection" && l.Str("user") == "alice");
        Assert.Equal($"CONNECT 127.0.0.1:{origin.Port}", conn.Str("request"));

        var bad = await Proc.CurlAsync("--socks5-hostname", proxy, "--proxy-user", "alice:wrong", $"{origin.Url}/100b");
        Assert.NotEqual(0, bad.ExitCode);
        var denial = await gw.WaitForLogAsync(l => l.Str("rule") == "authenticate" && l.Str("verdict") == "deny");
        Assert.Contains("bad credentials", denial.Str("reason"));
        var none = await Proc.CurlAsync("--socks5-hostname", proxy, $"{origin.Url}/100b");
        Assert.NotEqual(0, none.ExitCode);
        Assert.Equal(1, origin.Requests);
        Assert.Contains("bastion_auth_failures_total{listener=\"socks\"} 1", await gw.Host.Metrics.ExportAsync());
    }

    [Fact]
    public async Task Denied_domain_is_refused_with_0x02_before_any_lookup()
    {
        await using var gw = await Gateway();
        using var s = await Greet(gw);
        // A .invalid name cannot resolve: a 0x04 would mean the gateway looked it up before asking the policy.
        await s.SendAsync(DomainRequest(1, "deny.invalid", 80));
        var reply = await ReadReply(s);
        Assert.Equal(SocksReplyCode.NotAllowed, reply[1]);
        Assert.Empty(await s.ReadToEndAsync());
        var e = await gw.WaitForLogAsync(l => l.Str("request") == "CONNECT deny.invalid:80" && l.Str("event") == "request");
        Assert.Equal(("deny", "no-invalid", "invalid names", 2L), (e.Str("verdict"), e.Str("rule"), e.Str("reason"), e.Num("status")));
    }

    [Fact]
    public async Task Malformed_greetings_are_closed()
    {
        await using var gw = await Gateway();
        using (var s = await Sock.ConnectAsync(gw.Port("socks")))
        {
            await s.SendAsync([5, 0]); // no methods at all
            Assert.Equal(new byte[] { 5, 0xFF }, await s.ReadToEndAsync());
        }
        using (var s = await Sock.ConnectAsync(gw.Port("socks")))
        {
            await s.SendAsync("GET / HTTP/1.1\r\n\r\n"u8.ToArray());
            Assert.Empty(await s.ReadToEndAsync());
        }
        using (var s = await Sock.ConnectAsync(gw.Port("socks")))
        {
            // Only GSSAPI offered: no acceptable method.
            await s.SendAsync([5, 1, 1]);
            Assert.Equal(new byte[] { 5, 0xFF }, await s.ReadToEndAsync());
        }
        await gw.WaitForLogAsync(l => l.Str("event") == "connection" && l.Str("reason") == "not a SOCKS greeting");
        await gw.WaitForLogAsync(l => l.Str("event") == "connection" && l.Str("reason") == "malformed greeting");
        // The python client of the test plan: a greeting that announces 3 methods and sends 1, then silence.
        var py = await Proc.RunAsync("/usr/bin/python3", ["-c", $$"""
            import socket
            s = socket.create_connection(("127.0.0.1", {{gw.Port("socks")}}))
            s.sendall(b"\x05\x03\x00")
            s.settimeout(10)
            print(repr(s.recv(10)))
            """]);
        Assert.Equal("b''", py.Stdout.Trim());
        await gw.WaitForLogAsync(l => l.Str("reason") == "handshake timeout");
    }

    [Fact]
    public async Task Unsupported_commands_and_address_types()
    {
        await using var gw = await Gateway();
        using (var s = await Greet(gw))
        {
            await s.SendAsync(Ipv4Request(2, IPAddress.Loopback, 80)); // BIND
            Assert.Equal(SocksReplyCode.CommandNotSupported, (await ReadReply(s))[1]);
        }
        using (var s = await Greet(gw))
        {
            await s.SendAsync(Ipv4Request(9, IPAddress.Loopback, 80));
            Assert.Equal(SocksReplyCode.CommandNotSupported, (await ReadReply(s))[1]);
        }
        using (var s = await Greet(gw))
        {
            await s.SendAsync([5, 1, 0, 7, 1, 2, 3, 4]);
            Assert.Equal(SocksReplyCode.AddressTypeNotSupported, (await ReadReply(s))[1]);
        }
    }

    [Fact]
    public async Task Refused_port_gives_0x05_and_ipv6_targets_work()
    {
        await using var echo6 = TcpServer.Echo(IPAddress.IPv6Loopback);
        await using var gw = await Gateway();
        using (var s = await Greet(gw))
        {
            await s.SendAsync(Ipv4Request(1, IPAddress.Loopback, Wait.FreePort()));
            Assert.Equal(SocksReplyCode.ConnectionRefused, (await ReadReply(s))[1]);
        }
        using (var s = await Greet(gw))
        {
            await s.SendAsync([5, 1, 0, 4, .. IPAddress.IPv6Loopback.GetAddressBytes(), (byte)(echo6.Port >> 8), (byte)echo6.Port]);
            var reply = await ReadReply(s);
            Assert.Equal(0, reply[1]);
            Assert.Equal(4, reply[3]); // BND.ADDR is the gateway's (IPv6) end of the upstream connection
            Assert.Equal(IPAddress.IPv6Loopback, new IPAddress(reply.AsSpan(4, 16)));
            await s.SendAsync("over v6"u8.ToArray());
            Assert.Equal("over v6", Encoding.ASCII.GetString(await s.ReadExactlyAsync(7)));
        }
    }

    [Fact]
    public async Task Data_sent_with_the_request_is_not_lost()
    {
        await using var echo = TcpServer.Echo();
        await using var gw = await Gateway();
        using var s = await Sock.ConnectAsync(gw.Port("socks"));
        // Greeting, request and payload in one write, before any reply (optimistic clients do this).
        await s.SendAsync([5, 1, 0, .. Ipv4Request(1, IPAddress.Loopback, echo.Port), .. "early bytes"u8]);
        Assert.Equal(new byte[] { 5, 0 }, await s.ReadExactlyAsync(2));
        var reply = await ReadReply(s);
        Assert.Equal(0, reply[1]);
        Assert.Equal(1, reply[3]);
        Assert.Equal("early bytes", Encoding.ASCII.GetString(await s.ReadExactlyAsync(11)));
    }

    [Fact]
    public async Task Socks4_and_4a_when_enabled()
    {
        await using var echo = TcpServer.Echo();
        await using var gw = await Gateway("""
              - name: nosocks4
                type: socks5
                listen: 127.0.0.1:0
                policy: out
            """);
        using (var s = await Sock.ConnectAsync(gw.Port("socks")))
        {
            await s.SendAsync([4, 1, (byte)(echo.Port >> 8), (byte)echo.Port, 0, 0, 0, 1, .. "u"u8, 0, .. "localhost"u8, 0]);
            var r = await s.ReadExactlyAsync(8);
            Assert.Equal(0x5A, r[1]);
            await s.SendAsync("v4a"u8.ToArray());
            Assert.Equal("v4a", Encoding.ASCII.GetString(await s.ReadExactlyAsync(3)));
        }
        using (var s = await Sock.ConnectAsync(gw.Port("socks")))
        {
            await s.SendAsync([4, 1, 0, 80, 0, 0, 0, 1, 0, .. "deny.invalid"u8, 0]);
            Assert.Equal(0x5B, (await s.ReadExactlyAsync(8))[1]);
        }
        using (var s = await Sock.ConnectAsync(gw.Port("nosocks4")))
        {
            await s.SendAsync([4, 1, (byte)(echo.Port >> 8), (byte)echo.Port, 127, 0, 0, 1, 0]);
            Assert.Equal(0x5B, (await s.ReadExactlyAsync(8))[1]);
        }
        Assert.Equal(1, echo.Accepted);
    }

    [Fact]
    public async Task Udp_associate_relays_allowed_datagrams_and_drops_denied_ones()
    {
        using var echo = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        using var other = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        int echoPort = ((IPEndPoint)echo.Client.LocalEndPoint!).Port;
        int otherPort = ((IPEndPoint)other.Client.LocalEndPoint!).Port;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var echoTask = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                var d = await echo.ReceiveAsync(stop.Token);
                await echo.SendAsync(d.Buffer, d.RemoteEndPoint, stop.Token);
            }
        });
        int otherReceived = 0;
        var otherTask = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await other.ReceiveAsync(stop.Token);
                Interlocked.Increment(ref otherReceived);
            }
        });
        await using var gw = await Gateway(policy: $$"""
            policies:
              out:
                default: deny
                rules:
                  - allow: { host: [127.0.0.1, localhost], port: {{echoPort}} }
                    name: dns-like
            """);
        using var control = await Greet(gw);
        await control.SendAsync(Ipv4Request(3, IPAddress.Any, 0));
        var reply = await ReadReply(control);
        Assert.Equal(0, reply[1]);
        var relay = new IPEndPoint(new IPAddress(reply.AsSpan(4, 4)), (reply[8] << 8) | reply[9]);

        using var client = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        byte[] Wrap(byte atyp, byte[] addr, int port, string payload, byte frag = 0) =>
            [0, 0, frag, atyp, .. addr, (byte)(port >> 8), (byte)port, .. Encoding.ASCII.GetBytes(payload)];
        // Denied destination first, then a fragment, then allowed ones by IP and by name.
        await client.SendAsync(Wrap(1, IPAddress.Loopback.GetAddressBytes(), otherPort, "nope"), relay);
        await client.SendAsync(Wrap(1, IPAddress.Loopback.GetAddressBytes(), echoPort, "fragment", frag: 1), relay);
        await client.SendAsync(Wrap(1, IPAddress.Loopback.GetAddressBytes(), echoPort, "ping"), relay);
        using var rcts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var got = await client.ReceiveAsync(rcts.Token);
        Assert.Equal(relay, got.RemoteEndPoint);
        Assert.Equal(Wrap(1, IPAddress.Loopback.GetAddressBytes(), echoPort, "ping"), got.Buffer);
        await client.SendAsync(Wrap(3, [9, .. "localhost"u8], echoPort, "by name"), relay);
        got = await client.ReceiveAsync(rcts.Token);
        Assert.Equal("by name", Encoding.ASCII.GetString(got.Buffer.AsSpan(10)));

        var denied = await gw.WaitForLogAsync(l => l.Str("request") == $"UDP 127.0.0.1:{otherPort}");
        Assert.Equal(("deny", "out#default"), (denied.Str("verdict"), denied.Str("rule")));
        var allowed = await gw.WaitForLogAsync(l => l.Str("request") == $"UDP localhost:{echoPort}");
        Assert.Equal(("allow", "dns-like"), (allowed.Str("verdict"), allowed.Str("rule")));
        Assert.Equal(0, Volatile.Read(ref otherReceived));

        // Closing the control connection ends the association (and logs it).
        control.Shutdown(SocketShutdown.Both);
        var conn = await gw.WaitForLogAsync(l => l.Str("event") == "connection" && (l.Str("request") ?? "").StartsWith("UDP ASSOCIATE"));
        Assert.Contains("2 datagrams forwarded, 2 returned, 2 dropped", conn.Str("reason"));
        Assert.Equal(11, conn.Num("bytes_in"));
        stop.Cancel();
        await Task.WhenAll(echoTask.ContinueWith(_ => { }), otherTask.ContinueWith(_ => { }));
    }

    [Fact]
    public async Task Repeated_udp_denials_are_all_counted_while_their_log_lines_are_throttled()
    {
        using var other = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        int otherPort = ((IPEndPoint)other.Client.LocalEndPoint!).Port;
        await using var gw = await Gateway(policy: """
            policies:
              out:
                default: deny
                rules:
                  - deny: { host: 127.0.0.1 }
                    name: no-loopback-udp
            """);
        using var control = await Greet(gw);
        await control.SendAsync(Ipv4Request(3, IPAddress.Any, 0));
        var reply = await ReadReply(control);
        var relay = new IPEndPoint(new IPAddress(reply.AsSpan(4, 4)), (reply[8] << 8) | reply[9]);
        using var client = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        byte[] datagram = [0, 0, 0, 1, 127, 0, 0, 1, (byte)(otherPort >> 8), (byte)otherPort, .. "x"u8];
        const int N = 100;
        for (int i = 0; i < N; i++) await client.SendAsync(datagram, relay);

        // Every denial reaches bastion_decisions_total...
        await Wait.UntilAsync(() => gw.Host.Metrics.Counters("socks").Denied == N, TimeSpan.FromSeconds(10), $"{N} denials counted");
        // ...while the log got the first and at most one a second after it.
        control.Shutdown(SocketShutdown.Both);
        await gw.WaitForLogAsync(l => l.Str("event") == "connection" && (l.Str("request") ?? "").StartsWith("UDP ASSOCIATE"));
        int logged = gw.LogLines().Count(l => l.Str("rule") == "no-loopback-udp");
        Assert.InRange(logged, 1, 1 + 15);
        Assert.True(logged < N);
        var metrics = await gw.Host.Metrics.ExportAsync();
        Assert.Contains($"bastion_decisions_total{{listener=\"socks\",type=\"socks5\",verdict=\"deny\",rule=\"no-loopback-udp\"}} {N}", metrics);
    }

    [Fact]
    public async Task Hundred_parallel_sessions()
    {
        await using var echo = TcpServer.Echo();
        await using var gw = await Gateway();
        var tasks = Enumerable.Range(0, 100).Select(async i =>
        {
            using var s = await Greet(gw);
            await s.SendAsync(Ipv4Request(1, IPAddress.Loopback, echo.Port));
            Assert.Equal(0, (await ReadReply(s))[1]);
            var payload = Enumerable.Range(0, 4096).Select(k => (byte)(k * 7 + i)).ToArray();
            await s.SendAsync(payload);
            s.Shutdown(SocketShutdown.Send);
            Assert.Equal(payload, await s.ReadToEndAsync());
        });
        await Task.WhenAll(tasks);
        Assert.Equal(100, echo.Accepted);
        await Wait.UntilAsync(() => gw.LogLines().Count(l => l.Str("event") == "connection" && l.Num("bytes_in") == 4096) == 100,
            TimeSpan.FromSeconds(10), "100 connection lines");
    }
}

static class SocksReplyCode
{
    public const byte NotAllowed = 2, ConnectionRefused = 5, CommandNotSupported = 7, AddressTypeNotSupported = 8;
}
